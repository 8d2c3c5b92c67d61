"""Generator versions over the API: list the lineage (any token), make a ready version the
current one (an admin's token; also how a rollback is done). Training one is a run: `POST /runs`
with `kind: "train"`."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.pagination import paginate

from labelling import errors
from labelling.api.common import ADMIN, MAX_NUMBER, Error, Pages, admin_required
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.generators import services as generator_services

router = Router(tags=["model versions"])


class GeneratorVersion(Schema):
    model_name: str
    number: int
    parent: int | None
    dataset: str | None
    dataset_number: int | None
    method: str
    config: dict
    weights_sha256: str
    status: str
    error: str
    is_current: bool
    created_at: datetime
    against_parent: dict | None = Field(
        None,
        description="its latest evaluation against its parent: win rate with its interval, prompts, reward and "
        "per-criterion differences, and the verdict (better: the interval lies above 0.5; worse: below; undecided)",
    )

    @staticmethod
    def resolve_against_parent(obj) -> dict | None:
        return evaluation_selectors.figures(evaluation_selectors.against_parent([obj]).get(obj.pk))

    @staticmethod
    def resolve_parent(obj) -> int | None:
        return obj.parent.number if obj.parent_id else None

    @staticmethod
    def resolve_dataset(obj) -> str | None:
        return obj.dataset_version.dataset if obj.dataset_version_id else None

    @staticmethod
    def resolve_dataset_number(obj) -> int | None:
        return obj.dataset_version.number if obj.dataset_version_id else None


@router.get("", response={200: list[GeneratorVersion], **ADMIN}, operation_id="model_version_list")
@paginate(Pages)
def model_version_list(request: HttpRequest):
    """Every version of the generator, oldest first: parent, dataset version, method, status (an
    admin's token, as the Model versions page is an admin's)."""
    admin_required(request)
    return generator_selectors.generator_versions()


@router.get(
    "/{number}",
    response={200: GeneratorVersion, 404: Error, **ADMIN},
    operation_id="model_version_detail",
)
def model_version_detail(request: HttpRequest, number: int = Path(..., ge=1, le=MAX_NUMBER)):
    """One version, with its evaluation against its parent (an admin's token)."""
    admin_required(request)
    version = generator_selectors.generator_versions().filter(number=number).first()
    if version is None:
        raise Http404(f"no model version {number}")
    return version


@router.post(
    "/{number}/current",
    response={200: GeneratorVersion, 404: Error, 409: Error, **ADMIN},
    operation_id="model_version_make_current",
)
def model_version_make_current(
    request: HttpRequest,
    number: int = Path(..., ge=1, le=MAX_NUMBER),
    confirm: bool = Query(False, description="make it current although it is not marked better than its parent"),
):
    """Make a ready version current: runs that pin no version generate with it from now on.
    A version that is not ready is a 409 saying what it is; so is a version that is not marked
    better than its parent (not evaluated, undecided or worse) unless `confirm=true`."""
    admin_required(request)
    version = generator_selectors.generator_versions().filter(number=number).first()
    if version is None:
        raise Http404(f"no model version {number}")
    unconfirmed = evaluation_selectors.needs_confirmation(version)
    if unconfirmed and not confirm:
        return Status(409, {"detail": f"{unconfirmed}; send confirm=true to make it current anyway"})
    try:
        version = generator_services.generator_version_make_current(version=version)
    except ValidationError as exc:
        return Status(409, {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)})
    return generator_selectors.generator_versions().get(pk=version.pk)
