"""Generator versions over the API (an admin's token): list the lineage, read one, make a ready
version the current one (also how a rollback is done), with the Models page's check and
confirmation. Training one is a run: `POST /runs` with `kind: "train"`."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.pagination import paginate

from labelling import errors
from labelling.api.common import ADMIN, MAX_NUMBER, Error, Pages, admin_required
from labelling.api.runs import RewardWeight
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.evaluation import services as evaluation_services
from labelling.versions.generators import selectors as generator_selectors

router = Router(tags=["model versions"])


def _counted(version):
    """The version's evaluation against its parent that counts, looked up once per answer row."""
    if not hasattr(version, "counted_evaluation"):
        version.counted_evaluation = evaluation_selectors.against_parent([version]).get(version.pk)
    return version.counted_evaluation


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
        description="its evaluation against its parent that counts (the latest on held-out prompts, else the "
        "latest): the prompt set and whether it was held out (`prompt_set_use`), the judge's win rate with its "
        "interval, prompts, reward and per-criterion differences, the blind A/B figures (`human`), and `verdict`: "
        "better, worse or undecided by the rule that combines the judge's and the reviewers' (`decision`: whose "
        "verdict it is, why, and the rule)",
    )
    reward_weights: list[RewardWeight] | None = Field(
        None, description="GRPO: each reward function the trainer used and its weight; null for other methods"
    )
    confirm_needed: str | None = Field(
        None,
        description="why making it current needs `confirm=true` (not marked better than its parent on held-out "
        "prompts), or null (it needs none, or it is current)",
    )

    @staticmethod
    def resolve_against_parent(obj) -> dict | None:
        return evaluation_selectors.figures(_counted(obj))

    @staticmethod
    def resolve_reward_weights(obj) -> list[dict] | None:
        return generator_selectors.reward_weights(obj.train_run.params if obj.train_run_id else None)

    @staticmethod
    def resolve_confirm_needed(obj) -> str | None:
        return None if obj.is_current else evaluation_selectors.needs_confirmation(obj, _counted(obj))

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
    confirm: bool = Query(
        False, description="make it current although it is not marked better than its parent on held-out prompts"
    ),
):
    """Make a ready version current: runs that pin no version generate with it from now on.
    A version that is not ready is a 409 saying what it is; so is, unless `confirm=true`, a
    version not marked better than its parent on held-out prompts: never evaluated against it,
    evaluated only on prompts it trained on, or undecided or worse (the Models page asks the
    same question)."""
    admin_required(request)
    version = generator_selectors.generator_versions().filter(number=number).first()
    if version is None:
        raise Http404(f"no model version {number}")
    try:
        version = evaluation_services.generator_version_promote(version=version, confirmed=confirm)
    except evaluation_services.ConfirmationNeeded as exc:
        return Status(
            409,
            {
                "detail": f"{exc.reason}; send confirm=true to make it current anyway",
                "errors": {"confirm": "send confirm=true to make it current anyway"},
            },
        )
    except ValidationError as exc:
        return Status(409, {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)})
    return generator_selectors.generator_versions().get(pk=version.pk)
