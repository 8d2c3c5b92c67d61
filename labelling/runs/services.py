"""Run writes: start, resume and cancel a run. A run is executed by the model side
(`inference.execution`), reached through `executor`; what it makes (groups, completions, judge
judgments) is recorded by `labelling.records`.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labelling import clock
from labelling.live import broadcasts
from labelling.models import (
    Character,
    PipelineRun,
    PromptSet,
    Rubric,
)
from labelling.runs import executor, idempotency
from labelling.versions.generators import selectors as generator_selectors

GROUP_SIZE = 4  # completions per prompt unless a run says otherwise


REVIEW_OVERLAP_MAX = 10


def _overlap_check(params: Mapping) -> None:
    """`review_overlap`: how many reviewers each of the run's groups goes to, 1..10; a campaign's
    run starts at 0 (no reviewer until the campaign routes the group: labelling.campaigns)."""
    overlap = params.get("review_overlap", 1)
    low = 0 if "campaign" in params else 1
    if type(overlap) is not int or not low <= overlap <= REVIEW_OVERLAP_MAX:
        raise ValidationError(
            {"review_overlap": f"reviewers per group is a whole number from 1 to {REVIEW_OVERLAP_MAX}"}
        )


def run_start(
    *,
    kind: str,
    params: Mapping | None = None,
    character: Character | None = None,
    prompt_set: PromptSet | None = None,
    rubric: Rubric | None = None,
    source_run: PipelineRun | None = None,
    group_size: int = GROUP_SIZE,
    created_by=None,
    idempotency_key: str | None = None,
    user=None,
    enqueue: bool = True,
) -> tuple[PipelineRun, bool]:
    """Create a queued run and enqueue it once the row is committed.

    A run that generates (generate, revise) is pinned to a generator version: the ready one
    `params["generator_version"]` numbers, else the current one, whose number is then written
    into its params (a resume generates with the same weights, whatever is current by then).

    The same idempotency key returns the run it created the first time (created=False). With
    `user` (the key came from that user: the API, a form) the key is that user's alone, and
    reusing it for a different request is refused (`idempotency.IdempotencyConflict`); a key
    over `idempotency.MAX_LENGTH` characters is refused (`IdempotencyKeyInvalid`).
    """
    params = dict(params or {})
    key = idempotency.request_key(
        idempotency_key,
        user,
        {
            "kind": kind,
            "character": character and character.pk,
            "prompt_set": prompt_set and prompt_set.pk,
            "rubric": rubric and rubric.pk,
            "source_run": source_run and source_run.pk,
            "group_size": group_size,
            "params": params,
        },
    )
    if (existing := key.run()) is not None:
        return existing, False
    params.update(key.params())
    _run_check(kind=kind, character=character, prompt_set=prompt_set, rubric=rubric, source_run=source_run)
    _endpoints_check(params)
    _overlap_check(params)
    if kind in GENERATING and not params.get("generator_endpoint"):
        params["generator_version"] = generator_selectors.generator_version_checked(
            params.get("generator_version")
        ).number
    if settings.PIPELINE_SHARDS > 1:
        params["shards"] = settings.PIPELINE_SHARDS  # how this run is split, whatever a later resume's setting
    try:
        with transaction.atomic():
            run = PipelineRun.objects.create(
                kind=kind,
                params=params,
                character=character,
                prompt_set=prompt_set,
                rubric=rubric,
                source_run=source_run,
                group_size=group_size,
                created_by=created_by,
                idempotency_key=key.stored,
            )
    except IntegrityError:
        # A concurrent request with the same key created it first: that run is the answer.
        if (existing := key.run()) is None:
            raise
        return existing, False
    if enqueue:
        transaction.on_commit(lambda: executor.enqueue(run.pk))
    transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    return run, True


# The kinds whose runs generate text with the generator (and so are pinned to a version of it).
GENERATING = {PipelineRun.Kind.GENERATE, PipelineRun.Kind.REVISE}


def _run_check(*, kind, character, prompt_set, rubric, source_run) -> None:
    needs = {
        PipelineRun.Kind.GENERATE: {"character": character, "prompt_set": prompt_set},
        PipelineRun.Kind.JUDGE: {"rubric": rubric, "source_run": source_run},
        PipelineRun.Kind.REVISE: {"rubric": rubric, "source_run": source_run},
    }.get(kind)
    if needs is None:
        raise ValidationError({"kind": f"{kind!r} is not a pipeline kind (generate, judge, revise)"})
    missing = [name for name, value in needs.items() if value is None]
    if missing:
        raise ValidationError({name: f"a {kind} run needs a {name.replace('_', ' ')}" for name in missing})


ENDPOINT_FIELDS = ("generator_endpoint", "judge_endpoint")


def _endpoints_check(params: Mapping) -> None:
    """A run names OpenAI-compatible endpoints by their names in the settings (never an address);
    an unknown name is refused naming the field and the names there are. A run that generates
    through an endpoint pins no generator version (those are Triton's)."""
    configured = settings.OPENAI_ENDPOINTS
    for field in ENDPOINT_FIELDS:
        name = params.get(field)
        if name is not None and name not in configured:
            names = ", ".join(sorted(configured)) or "none are configured"
            raise ValidationError({field: f"no endpoint {name!r} (configured: {names})"})
    if params.get("generator_endpoint") and params.get("generator_version") is not None:
        raise ValidationError(
            {"generator_version": "a run that generates through an endpoint serves no generator version of ours"}
        )


def run_resume(*, run: PipelineRun) -> PipelineRun:
    """Queue a failed, partial, cancelled-with-items-left or stale run again; it does only what
    is missing. A run still running with a fresh heartbeat is refused: it would run twice."""
    S = PipelineRun.Status
    with transaction.atomic():
        resumable = PipelineRun.objects.filter(PipelineRun.resumable(), pk=run.pk)
        # A stale running run stays running: the next claim takes it over (and raises its
        # execution number, so a worker that only stalled stops). Others go back to queued.
        updated = resumable.filter(status__in=[S.RUNNING, S.QUEUED]).count() or resumable.update(
            status=S.QUEUED, cancel_requested=False, finished_at=None
        )
        if not updated:
            run.refresh_from_db()
            raise ValidationError({"status": _not_resumable(run)})
        transaction.on_commit(lambda: executor.enqueue(run.pk))
        transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    run.refresh_from_db()
    return run


def _not_resumable(run: PipelineRun) -> str:
    if run.status == PipelineRun.Status.RUNNING:
        return f"run #{run.pk} is running (its worker is alive); cancel it first, or wait for it to finish"
    if run.status == PipelineRun.Status.QUEUED:
        return f"run #{run.pk} is queued; a worker will take it up"
    return f"run #{run.pk} is {run.status}; only failed, partial, cancelled or stalled runs resume"


@transaction.atomic
def run_cancel(*, run: PipelineRun) -> PipelineRun:
    """Ask a run to stop. A queued run stops at once; a running one at its next item."""
    PipelineRun.objects.filter(pk=run.pk, status=PipelineRun.Status.QUEUED).update(
        status=PipelineRun.Status.CANCELLED, cancel_requested=True, finished_at=clock.now()
    )
    PipelineRun.objects.filter(pk=run.pk).exclude(status__in=PipelineRun.FINISHED).update(cancel_requested=True)
    transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    run.refresh_from_db()
    return run
