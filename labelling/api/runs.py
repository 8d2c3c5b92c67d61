"""Pipeline runs over the API: queue one (idempotent under an Idempotency-Key), list them,
follow one's progress, cancel or resume it. Running them is `inference`'s job, behind run_start.
A train run trains a new model version; an evaluate run starts an evaluation (two generate runs)
and answers its candidate's run."""

from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Body, Field, Path, Router, Schema, Status
from ninja.pagination import paginate

from labelling import errors, models
from labelling.access import roles
from labelling.api.catalogue import rubric_named
from labelling.api.common import (
    ADMIN,
    MAX_ID,
    MAX_NUMBER,
    READ,
    BodyIn,
    Error,
    Pages,
    admin_required,
    named,
    tagged_union,
)
from labelling.api.evaluations import evaluation_started
from labelling.datasets import selectors as dataset_selectors
from labelling.runs import selectors as run_selectors
from labelling.runs import services as run_services
from labelling.versions.evaluation import services as evaluation_services
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.training import selectors as training_selectors
from labelling.versions.training import services as training_services

router = Router(tags=["runs"])

RUN_MAX_TOKENS = 128  # a generate / judge / revise run's; an evaluate run takes the evaluation's default


def _max_tokens(default: str) -> Any:
    return Field(None, ge=1, le=4096, description=f"tokens per completion (default {default})")


def _endpoint(verb: str) -> Any:
    return Field(
        None,
        max_length=40,
        description=f"{verb} through this OpenAI-compatible endpoint, by its name in the settings "
        "(OPENAI_ENDPOINTS; default: the bundled backend)",
    )


def _generator_version() -> Any:
    return Field(
        None, ge=1, le=MAX_NUMBER, description="generate with this ready model version (default: the current one)"
    )


SOURCE_RUN = Field(..., ge=1, le=MAX_ID, description="the run whose completions to take")


class _Revises(BodyIn):
    """What a run that generates and judges (generate with `revise`, revise) takes besides its
    own fields: how weak a completion is, how many rounds, and with what."""

    max_tokens: int | None = _max_tokens(str(RUN_MAX_TOKENS))
    revise_threshold: float = Field(0.5, ge=0, le=1)
    max_rounds: int = Field(1, ge=1, le=5)
    generator_version: int | None = _generator_version()
    generator_endpoint: str | None = _endpoint("generate")
    judge_endpoint: str | None = _endpoint("judge")


class GenerateRunIn(_Revises):
    """Generate k completions per prompt of a prompt set in a character's voice; with a rubric,
    judge each one, and with `revise`, revise the weak ones in the same run."""

    kind: Literal["generate"]
    character: str = Field(..., description="character slug")
    prompt_set: str = Field(..., description="prompt set slug")
    rubric: str | None = Field(None, description="rubric slug, latest version: judges each completion")
    group_size: int = Field(4, ge=1, le=16, description="completions per prompt")
    review_overlap: int = Field(
        1, ge=1, le=10, description="reviewers each group goes to (2 or more: agreement between reviewers is measured)"
    )
    revise: bool = False


class JudgeRunIn(BodyIn):
    """Judge another run's completions under a rubric."""

    kind: Literal["judge"]
    source_run: int = SOURCE_RUN
    rubric: str = Field(..., description="rubric slug, latest version")
    max_tokens: int | None = _max_tokens(str(RUN_MAX_TOKENS))
    judge_endpoint: str | None = _endpoint("judge")


class ReviseRunIn(_Revises):
    """Revise another run's completions that score under the threshold, judging each revision."""

    kind: Literal["revise"]
    source_run: int = SOURCE_RUN
    rubric: str = Field(..., description="rubric slug, latest version")


class LiveReviewIn(BodyIn):
    share: float = Field(..., gt=0, le=1, description="share of each step's groups sent to reviewers")
    deadline_s: float = Field(..., ge=1, le=3600, description="how long a step waits for them")


class TrainRunIn(BodyIn):
    """Train a new model version from a dataset version ([training.md](training.md))."""

    kind: Literal["train"]
    dataset: str = Field(..., max_length=120, description="the dataset version, NAME@N (grpo_prompts, dpo or sft)")
    method: Literal["grpo", "dpo", "sft"] = Field(..., description="the training method")
    from_version: int | None = Field(
        None, ge=1, le=MAX_NUMBER, description="the version to train from (default: the current one)"
    )
    rubric: str | None = Field(None, description="rubric slug, latest version: GRPO's reward (default: the dataset's)")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="settings over the method's defaults (steps, learning_rate, beta, num_generations, "
        "loss_type, scale_rewards, reward_weights, lora, ...); the run records them all",
    )
    live_review: LiveReviewIn | None = Field(
        None,
        description="GRPO: reviewers inside the step; a share of each step's groups goes to the review queue and "
        "the step waits for them up to deadline_s (docs/campaigns.md#reviewers-inside-the-rl-step)",
    )


class EvaluateRunIn(BodyIn):
    """An evaluation, as `POST /api/evaluations` starts it, answered by its candidate's run."""

    kind: Literal["evaluate"]
    candidate: int = Field(..., ge=1, le=MAX_NUMBER, description="the model version to judge")
    rubric: str = Field(..., description="rubric slug, latest version: it scores both sides")
    baseline: int | None = Field(
        None, ge=1, le=MAX_NUMBER, description="the version to compare with (default: the candidate's parent)"
    )
    prompt_set: str | None = Field(
        None, description="prompt set slug (default: the prompts the candidate's dataset held out)"
    )
    character: str | None = Field(None, description="character slug (default: the prompt set's)")
    group_size: int = Field(4, ge=1, le=16, description="completions per prompt and side")
    max_tokens: int | None = _max_tokens(
        f"{evaluation_services.DEFAULT_SAMPLING['max_tokens']}, as POST /api/evaluations"
    )
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description=f"both sides' seed (default {evaluation_services.DEFAULT_SEED})"
    )
    human_pairs: int = Field(
        0,
        ge=0,
        le=evaluation_services.MAX_HUMAN_PAIRS,
        description="pairs of answers (one from each side) queued for reviewers to compare blind",
    )


# One body per kind, told apart by `kind`: each names only what its kind reads, and what it needs
# is required (a 422 naming the field when it is missing).
RunIn = tagged_union(GenerateRunIn, JudgeRunIn, ReviseRunIn, TrainRunIn, EvaluateRunIn)


class Run(Schema):
    id: int
    kind: str
    status: str
    total_items: int
    done_items: int
    failed_items: int
    progress_percent: int
    errors: list[dict]
    generator_version: int | None = Field(None, description="the model version it generates with")
    generator_endpoint: str | None = Field(None, description="the endpoint it generates through (none: bundled)")
    judge_endpoint: str | None = Field(None, description="the endpoint it judges through (none: bundled)")
    created_at: datetime
    finished_at: datetime | None

    trains_version: int | None = Field(None, description="train: the model version it makes")
    evaluation: int | None = Field(None, description="the evaluation it is a side of (either side)")

    @staticmethod
    def resolve_errors(obj, context) -> list[dict]:
        """What failed; where things live (addresses) only for an admin's token, as only admins
        see a run's page."""
        request = (context or {}).get("request")
        if request is not None and roles.is_admin(request.user):
            return obj.errors
        return [{**e, "message": errors.without_addresses(str(e.get("message", "")))} for e in obj.errors]

    @staticmethod
    def resolve_generator_version(obj) -> int | None:
        return (obj.params or {}).get("generator_version")

    @staticmethod
    def resolve_generator_endpoint(obj) -> str | None:
        return (obj.params or {}).get("generator_endpoint")

    @staticmethod
    def resolve_judge_endpoint(obj) -> str | None:
        return (obj.params or {}).get("judge_endpoint")

    @staticmethod
    def resolve_trains_version(obj) -> int | None:
        return (obj.params or {}).get("version") if obj.kind == models.PipelineRun.Kind.TRAIN else None

    @staticmethod
    def resolve_evaluation(obj) -> int | None:
        for side in ("evaluation_as_candidate", "evaluation_as_baseline"):
            try:
                return getattr(obj, side).pk
            except ObjectDoesNotExist:  # not that side of any evaluation
                continue
        return None


# What Run reads besides the run's own row: the evaluation it belongs to, if any.
RUN_RELATED = ("evaluation_as_candidate", "evaluation_as_baseline")


class TrainingStep(Schema):
    step: int
    loss: float | None
    reward_mean: float | None
    reward_std: float | None
    kl: float | None
    tokens_per_s: float | None


class RewardWeight(Schema):
    function: str = Field(description="the reward function: rule_<criterion> or judge")
    criteria: list[str] = Field(description="the rubric criteria it scores")
    weight: float
    derived: bool = Field(description="derived from the rubric's weights (true) or given in the run's settings")


class Training(Schema):
    version: int | None = Field(description="the model version it makes")
    method: str
    dataset: str = Field(description="NAME@N")
    max_steps: int
    steps: list[TrainingStep] = Field(
        description="every logged step, oldest first: the numbers the run page's chart draws"
    )
    reward_weights: list[RewardWeight] | None = Field(
        description="GRPO: each reward function and the weight the trainer gives it; null for DPO and SFT"
    )


class RunPart(Schema):
    index: int
    status: str = Field(description="queued, running or done")
    claims: int = Field(
        description="how many times a consumer claimed it: a takeover from a consumer that stopped, or a resume, adds one"
    )
    heartbeat_at: datetime | None = Field(description="its consumer's last sign of life")
    done_items: int
    failed_items: int
    stale: bool = Field(description="running without a heartbeat within RUN_STALE_AFTER_S: the watchdog hands it on")


class RunDetail(Run):
    training: Training | None = Field(None, description="train runs: per-step progress and reward weights")
    parts: list[RunPart] = Field(
        description="a run spread over several consumers (PIPELINE_SHARDS): each part; empty for a run in one piece"
    )

    @staticmethod
    def resolve_parts(obj) -> list[dict]:
        return run_selectors.run_parts(obj)

    @staticmethod
    def resolve_training(obj) -> dict | None:
        if obj.kind != models.PipelineRun.Kind.TRAIN:
            return None
        params = obj.params or {}
        return {
            "version": params.get("version"),
            "method": params.get("method", ""),
            "dataset": params.get("dataset", ""),
            "max_steps": obj.total_items,
            "steps": training_selectors.training_curve(obj.pk),
            "reward_weights": generator_selectors.reward_weights(params),
        }


@router.post("", response={201: Run, 200: Run, 400: Error, 409: Error, **ADMIN}, operation_id="run_create")
def run_create(request: HttpRequest, body: Body[RunIn]):
    """Queue a run. Send an Idempotency-Key header: the same key returns the same run (200)."""
    admin_required(request)
    if isinstance(body, TrainRunIn):
        return _train_create(request, body)
    if isinstance(body, EvaluateRunIn):
        return _evaluate_create(request, body)
    rubric = rubric_named(body.rubric)  # first: a bad rubric is named before a bad source run
    source = None
    if getattr(body, "source_run", None) is not None:
        source = models.PipelineRun.objects.filter(pk=body.source_run).first()
        if source is None:
            raise ValidationError({"source_run": f"no run {body.source_run}"})
    fields = body.model_dump()
    run, created = run_services.run_start(
        kind=body.kind,
        character=named(models.Character, fields.get("character"), "character"),
        prompt_set=named(models.PromptSet, fields.get("prompt_set"), "prompt_set"),
        rubric=rubric,
        source_run=source,
        group_size=fields.get("group_size", run_services.GROUP_SIZE),
        created_by=request.user,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        user=request.user,
        params={
            "sampling": {"max_tokens": body.max_tokens if body.max_tokens is not None else RUN_MAX_TOKENS},
            "revise": fields.get("revise", False),
            "revise_threshold": fields.get("revise_threshold", 0.5),
            "max_rounds": fields.get("max_rounds", 1),
            "review_overlap": fields.get("review_overlap", 1),
            **{f: fields[f] for f in ("generator_version", *run_services.ENDPOINT_FIELDS) if fields.get(f) is not None},
        },
    )
    return Status(201 if created else 200, run)


def _train_create(request: HttpRequest, body: TrainRunIn):
    rubric = rubric_named(body.rubric)
    dataset = dataset_selectors.dataset_version_named(body.dataset)
    run, created = training_services.train_start(
        dataset_version=dataset,
        method=body.method,
        params=body.training,
        from_version=body.from_version,
        rubric=rubric,
        live_review=body.live_review.model_dump() if body.live_review else None,
        created_by=request.user,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        user=request.user,
    )
    return Status(201 if created else 200, run)


def _evaluate_create(request: HttpRequest, body: EvaluateRunIn):
    """An evaluation (labelling.versions.evaluation): answered by its candidate's run, whose `evaluation`
    names it. The same Idempotency-Key returns the same evaluation (200)."""
    evaluation = evaluation_started(
        request,
        candidate=body.candidate,
        rubric=body.rubric,
        baseline=body.baseline,
        prompt_set=body.prompt_set,
        character=body.character,
        completions_per_prompt=body.group_size,
        seed=body.seed if body.seed is not None else evaluation_services.DEFAULT_SEED,
        max_tokens=body.max_tokens or evaluation_services.DEFAULT_SAMPLING["max_tokens"],
        human_pairs=body.human_pairs,
    )
    return Status(
        201 if evaluation.started else 200,
        models.PipelineRun.objects.select_related(*RUN_RELATED).get(pk=evaluation.candidate_run_id),
    )


@router.get("", response={200: list[Run], **READ}, operation_id="run_list")
@paginate(Pages)
def run_list(request: HttpRequest):
    return models.PipelineRun.objects.select_related(*RUN_RELATED).order_by("-id")


@router.get("/{run_id}", response={200: RunDetail, 404: Error, **READ}, operation_id="run_detail")
def run_detail(request: HttpRequest, run_id: int = Path(..., ge=1, le=MAX_ID)):
    """A run's status and progress; a train run's also its logged steps (`training`)."""
    return get_object_or_404(models.PipelineRun.objects.select_related(*RUN_RELATED), pk=run_id)


@router.post("/{run_id}/cancel", response={200: Run, 404: Error, **ADMIN}, operation_id="run_cancel")
def run_cancel(request: HttpRequest, run_id: int = Path(..., ge=1, le=MAX_ID)):
    admin_required(request)
    return run_services.run_cancel(run=get_object_or_404(models.PipelineRun, pk=run_id))


@router.post("/{run_id}/resume", response={200: Run, 404: Error, 409: Error, **ADMIN}, operation_id="run_resume")
def run_resume(request: HttpRequest, run_id: int = Path(..., ge=1, le=MAX_ID)):
    """Queue a failed, partial, cancelled or stalled run again (it does only what is missing).
    A run whose worker is alive, or one already queued or done, is a 409 saying so."""
    admin_required(request)
    run = get_object_or_404(models.PipelineRun, pk=run_id)
    try:
        return run_services.run_resume(run=run)
    except ValidationError as exc:
        return Status(409, {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)})
