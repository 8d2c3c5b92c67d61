"""The one NinjaAPI, at /api/ with OpenAPI docs at /api/docs: every router mounted here.

Bearer tokens (`manage.py create_token USER`); writes need an admin's token. Errors are
JSON: {"detail": "...", "errors": {"field": "message"}}. Lists paginate with ?limit= and
?offset=. The routers and their schemas live in `labelling.api`.
"""

from functools import partial, wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as BodyInvalid

from labelling.access import roles
from labelling.api import (
    campaigns,
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


def _docs_for_users_with_a_role(view):
    """The API's docs page and OpenAPI document where API_DOCS_PUBLIC is off (production's
    default): for a signed-in user with a role; anyone else is sent to sign in (a 403 for a user
    in no role). They list every operation, which outsiders need not see."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if roles.user_role(request.user) is None:
            raise PermissionDenied("the API's documentation is for reviewers and admins")
        return view(request, *args, **kwargs)

    return wrapped


api = NinjaAPI(
    title="Shaping API",
    version="1",
    auth=common.TokenAuth(),
    parser=common.StrictParser(),
    urls_namespace="api",
    docs_decorator=None if settings.API_DOCS_PUBLIC else _docs_for_users_with_a_role,
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
    ("/campaigns", campaigns.router),
    ("/evaluations", evaluations.router),
    ("/review/pairs", pairs.router),
    ("/review", review.router),
    ("", common.fallback),  # last: it answers any path the routers above do not claim
):
    api.add_router(prefix, router)
