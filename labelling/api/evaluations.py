"""Evaluations over the API: compare a version with a baseline (its parent by default) on a
prompt set, and read the comparison once both sides have run."""

from datetime import datetime

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Router, Schema, Status

from labelling.api.catalogue import rubric_named
from labelling.api.common import ADMIN, MAX_ID, MAX_NUMBER, BodyIn, Error, admin_required, named
from labelling.models import Character, PromptSet
from labelling.models import Evaluation as EvaluationRow
from labelling.versions.evaluation import decisions, pairs, selectors, services

router = Router(tags=["evaluations"])


class EvaluationIn(BodyIn):
    candidate: int = Field(..., ge=1, le=MAX_NUMBER, description="the version to judge")
    baseline: int | None = Field(None, ge=1, le=MAX_NUMBER, description="default: the candidate's parent")
    prompt_set: str | None = Field(
        None, max_length=80, description="prompt set slug (default: the prompts the candidate's dataset held out)"
    )
    rubric: str = Field(..., max_length=80, description="rubric slug (latest version); it scores both sides")
    character: str | None = Field(
        None, max_length=80, description="whose persona leads the prompts (default: the prompt set's last run's)"
    )
    completions_per_prompt: int = Field(4, ge=1, le=16)
    seed: int = Field(services.DEFAULT_SEED, ge=0, le=2**31 - 1)
    max_tokens: int = Field(services.DEFAULT_SAMPLING["max_tokens"], ge=1, le=4096)
    human_pairs: int = Field(
        0, ge=0, le=services.MAX_HUMAN_PAIRS, description="blind A/B pairs sent to reviewers once both sides have run"
    )
    human_overlap: int = Field(1, ge=1, le=10, description="reviewers who choose on each pair")


class Evaluation(Schema):
    id: int
    candidate: int
    baseline: int
    prompt_set: str
    rubric: str
    completions_per_prompt: int
    sampling: dict
    candidate_run: int
    baseline_run: int
    judge: dict
    prompt_set_use: dict = Field(
        description="whether its prompts were held out of the candidate's training: `kind` held_out, training, "
        "mixed or unknown (no training data recorded), `label`, `trained_on` of `prompts`, `text`"
    )
    status: str = Field(description="running, done or stopped (a side failed or was cancelled)")
    result: dict | None = Field(description="the comparison once both sides have run (docs/training.md)")
    human_pairs: int
    human: dict | None = Field(
        description="blind A/B: pairs sent and chosen on, and once there are choices the human win rate with its "
        "interval, agreement with the judge (same side, Cohen's kappa) and side bias, overall and per reviewer"
    )
    decision: dict = Field(
        description="the verdict that counts (`verdict`: better, worse, undecided, or null before a comparison), "
        "whose it is (`source`: judge or human), why (`reason`), each side's own verdict and reason (`judge`, "
        "`human`), `min_prompts` (EVALUATION_MIN_PROMPTS) and the `rule` that combines them (docs/loop.md)"
    )
    created_at: datetime

    @staticmethod
    def resolve_candidate(obj) -> int:
        return obj.candidate.number

    @staticmethod
    def resolve_baseline(obj) -> int:
        return obj.baseline.number

    @staticmethod
    def resolve_prompt_set(obj) -> str:
        return obj.prompt_set.slug

    @staticmethod
    def resolve_rubric(obj) -> str:
        return f"{obj.rubric.slug}@v{obj.rubric.version}"

    @staticmethod
    def resolve_candidate_run(obj) -> int:
        return obj.candidate_run_id

    @staticmethod
    def resolve_baseline_run(obj) -> int:
        return obj.baseline_run_id

    @staticmethod
    def resolve_status(obj) -> str:
        return selectors.evaluation_status(obj)

    @staticmethod
    def resolve_prompt_set_use(obj) -> dict:
        return decisions.prompt_set_use(obj)

    @staticmethod
    def resolve_result(obj) -> dict | None:
        return selectors.evaluation_result(obj)

    @staticmethod
    def resolve_human(obj) -> dict | None:
        return _human(obj)

    @staticmethod
    def resolve_decision(obj) -> dict:
        return selectors.evaluation_decision(obj, _human(obj))


def _human(evaluation: EvaluationRow) -> dict | None:
    """The blind A/B figures, read once per answer."""
    if not hasattr(evaluation, "human_read"):
        evaluation.human_read = pairs.human_figures(evaluation)
    return evaluation.human_read


@router.post(
    "",
    response={201: Evaluation, 200: Evaluation, 400: Error, 409: Error, **ADMIN},
    operation_id="evaluation_create",
)
def evaluation_create(request: HttpRequest, body: EvaluationIn):
    """Queue both sides: k completions per prompt from each version, the same seeds and sampling.
    Send an Idempotency-Key header: the same key returns the same evaluation (200)."""
    admin_required(request)
    evaluation = evaluation_started(
        request,
        candidate=body.candidate,
        baseline=body.baseline,
        prompt_set=body.prompt_set,
        rubric=body.rubric,
        character=body.character,
        completions_per_prompt=body.completions_per_prompt,
        seed=body.seed,
        max_tokens=body.max_tokens,
        human_pairs=body.human_pairs,
        human_overlap=body.human_overlap,
    )
    return Status(201 if evaluation.started else 200, evaluation)


def evaluation_started(
    request: HttpRequest,
    *,
    candidate: int,
    rubric: str,
    baseline: int | None,
    prompt_set: str | None,
    character: str | None,
    completions_per_prompt: int,
    seed: int,
    max_tokens: int,
    human_pairs: int,
    human_overlap: int = 1,
) -> EvaluationRow:
    """The one way the API starts an evaluation: this route, and `POST /api/runs` with
    `kind: "evaluate"` (which answers the candidate's run). The request's Idempotency-Key, if
    any, is its user's."""
    return services.evaluation_start(
        candidate=candidate,
        baseline=baseline,
        prompt_set=named(PromptSet, prompt_set, "prompt_set"),
        rubric=rubric_named(rubric),
        character=named(Character, character, "character"),
        completions_per_prompt=completions_per_prompt,
        seed=seed,
        sampling={"max_tokens": max_tokens},
        created_by=request.user,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        user=request.user,
        human_pairs=human_pairs,
        human_overlap=human_overlap,
    )


@router.get("/{evaluation_id}", response={200: Evaluation, 404: Error, **ADMIN}, operation_id="evaluation_detail")
def evaluation_detail(request: HttpRequest, evaluation_id: int = Path(..., ge=1, le=MAX_ID)):
    """One evaluation; its result appears once both runs have finished. An admin's token: the
    answers are shown with the version that wrote them (reviewers compare them blind)."""
    admin_required(request)
    evaluation = get_object_or_404(EvaluationRow, pk=evaluation_id)
    return services.evaluation_finish(evaluation=evaluation)
