"""The one NinjaAPI, at /api/ with OpenAPI docs at /api/docs: every router mounted here.

Bearer tokens (`manage.py create_token USER`); writes need an admin's token. Errors are
JSON: {"detail": "...", "errors": {"field": "message"}}. Lists paginate with ?limit= and
?offset=. The routers and their schemas live in `labelling.api`.
"""

from functools import partial

from django.core.exceptions import RequestDataTooBig, ValidationError
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as BodyInvalid

from labelling.api import (
    catalogue,
    characters,
    common,
    datasets,
    evaluations,
    generations,
    judgments,
    model_versions,
    pairs,
    review,
    runs,
)
from labelling.catalogue.importers import ImportFailed
from labelling.datasets.storage import DatasetCorrupt
from labelling.runs.idempotency import IdempotencyConflict, IdempotencyKeyInvalid

api = NinjaAPI(
    title="Shaping API", version="1", auth=common.TokenAuth(), parser=common.StrictParser(), urls_namespace="api"
)

api.add_exception_handler(ValidationError, partial(common.refused, api=api))
api.add_exception_handler(HttpError, partial(common.unreadable, api=api))
api.add_exception_handler(BodyInvalid, partial(common.malformed, api=api))
api.add_exception_handler(ImportFailed, partial(common.import_refused, api=api))
api.add_exception_handler(DatasetCorrupt, partial(common.dataset_corrupt, api=api))
# Refusals of an Idempotency-Key (ValidationErrors, answered with their own statuses).
api.add_exception_handler(IdempotencyKeyInvalid, partial(common.key_malformed, api=api))
api.add_exception_handler(IdempotencyConflict, partial(common.key_conflict, api=api))
api.add_exception_handler(RequestDataTooBig, partial(common.body_too_big, api=api))

# Each router mounted at its prefix; the catalogue's lists and import are one path each, at the root.
for prefix, router in (
    ("", catalogue.router),
    ("/sheets", characters.sheets),
    ("/puzzles", characters.puzzles),
    ("/runs", runs.router),
    ("/generations", generations.router),
    ("/judgments", judgments.router),
    ("/datasets", datasets.router),
    ("/model-versions", model_versions.router),
    ("/evaluations", evaluations.router),
    ("/review/pairs", pairs.router),
    ("/review", review.router),
    ("", common.fallback),  # last: it answers any path the routers above do not claim
):
    api.add_router(prefix, router)
