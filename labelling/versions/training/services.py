"""Writes of training: start a train run (with the version it makes), record its steps, and
move the version through its lifecycle."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max

from labelling import errors
from labelling.datasets.storage import DatasetCorrupt, dataset_verify
from labelling.live import broadcasts
from labelling.models import DatasetVersion, GeneratorVersion, PipelineRun, Rubric, TrainingStep
from labelling.runs import executor, idempotency
from labelling.versions.generators import selectors as generator_selectors

# The dataset kind each method trains on (TRL's GRPOTrainer wants prompts only: it generates).
METHOD_KINDS = {
    "grpo": DatasetVersion.Kind.GRPO_PROMPTS,
    "dpo": DatasetVersion.Kind.DPO,
    "sft": DatasetVersion.Kind.SFT,
}


def version_root(model_name: str, number: int):
    """Where a trained version's files live: DATA_DIR/generators/<model>/<n>/ (never in git)."""
    return settings.DATA_DIR / "generators" / model_name / str(number)


def train_start(
    *,
    dataset_version: DatasetVersion,
    method: str,
    params: Mapping | None = None,
    from_version: int | None = None,
    rubric: Rubric | None = None,
    calibration: dict | None = None,
    live_review: dict | None = None,
    created_by=None,
    idempotency_key: str | None = None,
    user=None,
    enqueue: bool = True,
) -> tuple[PipelineRun, bool]:
    """Queue a train run and register the version it will make (status training).

    Everything that can be checked before a worker takes it is checked here, and a refusal
    creates nothing: the method against the dataset version's kind, its file against its
    sha256, the version trained from (ready, with Hugging Face weights), the training settings
    (defaults recorded), and for GRPO a rubric with a criterion a reward can use. The same
    idempotency key returns the run it created the first time (created=False); with `user` it
    is scoped to that user and the request, as `run_start` scopes it."""
    key = idempotency.request_key(
        idempotency_key,
        user,
        {
            "kind": PipelineRun.Kind.TRAIN,
            "dataset_version": dataset_version.pk,
            "method": method,
            "params": dict(params or {}),
            "from_version": from_version,
            "rubric": rubric and rubric.pk,
            **({"live_review": dict(live_review)} if live_review else {}),
        },
    )
    if (existing := key.run()) is not None:
        return existing, False
    if method not in METHOD_KINDS:
        raise ValidationError({"method": f"unknown method {method!r} ({', '.join(METHOD_KINDS)})"})
    wanted = METHOD_KINDS[method]
    if dataset_version.kind != wanted:
        raise ValidationError(
            {
                "dataset": f"{dataset_version.dataset} v{dataset_version.number} is a {dataset_version.kind} "
                f"version; {method} trains on a {wanted} version"
            }
        )
    try:
        dataset_verify(dataset_version)
    except DatasetCorrupt as exc:
        raise ValidationError({"dataset": str(exc)}) from None
    try:
        parent = generator_selectors.generator_version_for(from_version)
    except generator_selectors.GeneratorUnavailable as exc:
        raise ValidationError({"from_version": str(exc)}) from None
    parent_hf = generator_selectors.generator_version_hf_dir(parent)
    if parent_hf is None or not (parent_hf / "config.json").is_file():
        raise ValidationError(
            {
                "from_version": f"version {parent.number} has no Hugging Face weights to train from ({parent_hf or 'none recorded'})"
            }
        )
    try:
        training = executor.train_params(method, dict(params or {}), base_hf_dir=parent_hf)
    except executor.TrainerUnavailable as exc:
        raise ValidationError({"method": str(exc)}) from None
    except ValueError as exc:
        raise ValidationError({"params": str(exc)}) from None
    spec = _reward_rubric(method, dataset_version, rubric)
    if live_review is not None:
        _live_review_check(method, live_review, spec)
    if spec and calibration:  # GRPO's judge reward maps the judge's scores through them
        spec = {
            **spec,
            "criteria": [
                {**c, **({"calibration": calibration[c["key"]]} if c["key"] in calibration else {})}
                for c in spec["criteria"]
            ],
        }
    run_params = {
        "method": method,
        "dataset": f"{dataset_version.dataset}@{dataset_version.number}",
        "dataset_version": dataset_version.pk,
        "from_version": parent.number,
        "training": training,
        **({"rubric_spec": spec} if spec else {}),
        **({"live_review": dict(live_review)} if live_review else {}),
        **key.params(),
    }
    for _ in range(5):  # a concurrent train run may take the number: take the next
        try:
            with transaction.atomic():
                number = (
                    GeneratorVersion.objects.filter(model_name=parent.model_name).aggregate(n=Max("number"))["n"] or 0
                ) + 1
                run = PipelineRun.objects.create(
                    kind=PipelineRun.Kind.TRAIN,
                    params={**run_params, "version": number},
                    rubric=rubric,
                    total_items=training["steps"],
                    created_by=created_by,
                    idempotency_key=key.stored,
                )
                root = version_root(parent.model_name, number)
                GeneratorVersion.objects.create(
                    model_name=parent.model_name,
                    number=number,
                    parent=parent,
                    dataset_version=dataset_version,
                    method=method,
                    config=training,
                    onnx_dir=str(root / "onnx"),
                    hf_dir=str(root / "train" / "hf"),
                    status=GeneratorVersion.Status.TRAINING,
                    train_run=run,
                )
        except IntegrityError:
            if (existing := key.run()) is not None:
                return existing, False  # a concurrent request with the same key made it first
            continue
        break
    else:
        raise ValidationError({"version": "could not take a version number; try again"})
    if enqueue:
        transaction.on_commit(lambda: executor.enqueue(run.pk))
    transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    return run, True


LIVE_DEADLINE_MAX_S = 3600


def _live_review_check(method: str, live_review: dict, spec: dict | None) -> None:
    """Reviewers inside the RL step: GRPO only, a share of each step's groups in (0, 1], a
    deadline of 1 to 3600 s, and a judge criterion that moves the reward (the reviewers score
    what the judge would)."""
    if method != "grpo":
        raise ValidationError({"live_review": "reviewers inside the RL step is a GRPO mode"})
    share, deadline = live_review.get("share"), live_review.get("deadline_s")
    if set(live_review) != {"share", "deadline_s"}:
        raise ValidationError({"live_review": "an object of exactly share and deadline_s"})
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ValidationError({"live_review": "share is a share of each step's groups, above 0 and at most 1"})
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not 1 <= deadline <= LIVE_DEADLINE_MAX_S:
        raise ValidationError({"live_review": f"deadline_s is seconds from 1 to {LIVE_DEADLINE_MAX_S}"})
    if not any(c.get("rule") is None and (c.get("weight") or 0) > 0 for c in (spec or {}).get("criteria", [])):
        raise ValidationError(
            {
                "live_review": "the rubric has no judge criterion with a weight above 0: nothing for reviewers to score in the step"
            }
        )


def _reward_rubric(method: str, dataset_version: DatasetVersion, rubric: Rubric | None) -> dict | None:
    """GRPO's reward: the rubric given, else the one the dataset version records."""
    if method != "grpo":
        return None
    spec = rubric.as_spec() if rubric else (dataset_version.reward_policy or {}).get("rubric_spec")
    if not spec:
        raise ValidationError(
            {
                "rubric": f"{dataset_version.dataset} v{dataset_version.number} records no rubric: "
                "name one (its criteria are the reward) or build the version with a rubric filter"
            }
        )
    usable = [c for c in spec.get("criteria", []) if (c.get("weight") or 0) > 0]
    if not usable:
        raise ValidationError(
            {
                "rubric": f"rubric {spec.get('slug')} v{spec.get('version')} has no criterion with a weight above 0 to reward"
            }
        )
    return spec


def training_step_record(*, run_id: int, step: int, metrics: Mapping) -> None:
    """Store (or replace, after a resume) one logged step."""
    known = {k: metrics.get(k) for k in ("loss", "reward_mean", "reward_std", "kl", "tokens_per_s")}
    rest = {k: v for k, v in metrics.items() if k not in known and k not in ("event", "step")}
    TrainingStep.objects.update_or_create(run_id=run_id, step=step, defaults={**known, "metrics": rest})


def train_resumed(*, run_id: int, step: int) -> None:
    """Note that a worker resumed the run from its checkpoint at `step` (the page and the
    tests read `params["resumed_from"]`, one entry per resume)."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=run_id)
        run.params = {**run.params, "resumed_from": [*run.params.get("resumed_from", []), step]}
        run.save(update_fields=["params"])


def version_status(*, version: GeneratorVersion, status: str, error: str = "", **fields) -> GeneratorVersion:
    """Move a trained version to `status` (with the reason when it failed). A version that is
    current is never touched: it keeps serving whatever happens to a run. A NUL in the reason
    (a trainer's message) is stored as U+FFFD."""
    with transaction.atomic():
        row = GeneratorVersion.objects.select_for_update().get(pk=version.pk)
        if row.is_current:
            return row
        row.status = status
        row.error = errors.nul_replaced(error[:4000])
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()
    return row
