"""Huey tasks that execute pipeline runs, and the watchdog that resumes orphaned ones."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from inference import execution
from inference.dispatch import TaskManager
from inference.pipelines import RunContext, run_items
from inference.serving import backends_for_run, get_backend
from inference.train_queue import execute_train
from labelling import health
from labelling.campaigns import runner as campaign_runner
from labelling.models import GeneratorVersion, PipelineRun
from labelling.runs import services as run_services
from labelling.versions.training import services as training_services

log = logging.getLogger(__name__)


def queue_run(run_id: int) -> None:
    """Queue a run for the workers that take its kind (the executor seam and the watchdogs):
    train runs on the training consumers' queue (`inference.train_queue`), the others here."""
    if _is_train(run_id):
        execute_train(run_id)
    else:
        execute_run(run_id)


def _is_train(run_id: int) -> bool:
    return PipelineRun.objects.filter(pk=run_id, kind=PipelineRun.Kind.TRAIN).exists()


@db_task(retries=0)
def execute_run(run_id: int) -> str:
    if _is_train(run_id):
        # Queued here by an older message: train runs belong to the training consumers.
        execute_train(run_id)
        return "handed to the train queue"
    return execute(run_id)


def execute(run_id: int, backend=None) -> str:
    """Run every missing item of a run. Safe to call twice, at once or one after the other:
    only one caller claims it, and a caller whose claim is taken over stops writing. It generates
    and judges through the backends the run's params name (`generator_endpoint`, `judge_endpoint`),
    the default backend otherwise. A run split into parts (`params["shards"]`) is handed out as
    one message per part, which any pipeline consumer takes (`execute_shard`)."""
    run = PipelineRun.objects.filter(pk=run_id).first()
    if run is not None and execution.run_shards(run) > 1:
        return _hand_out(run)
    with execution.run_claimed(run_id=run_id, stale_after_s=settings.RUN_STALE_AFTER_S) as claim:
        if claim is None:
            return "not claimed"
        return _execute(claim, backend)


def _hand_out(run: PipelineRun) -> str:
    """Queue each part of a sharded run still to finish (each taken by whichever consumer is free)."""
    try:
        total, items = run_items(RunContext(run, settings.INFERENCE_BACKEND))
        missing = len(list(items))
    except Exception as exc:
        log.exception("run %s could not start", run.pk)
        _run_fail_unclaimed(run, exc)
        return "failed to start"
    parts = execution.shards_prepare(run_id=run.pk, total=total, missing=missing)
    for index in parts:
        execute_shard(run.pk, index)
    return f"handed out {len(parts)} parts" if parts else "not claimed"


def _run_fail_unclaimed(run: PipelineRun, exc: Exception) -> None:
    """A sharded run that cannot start: failed with the reason, as a claimed one would be."""
    with execution.run_claimed(run_id=run.pk, stale_after_s=settings.RUN_STALE_AFTER_S) as claim:
        if claim is not None:
            execution.run_fail(
                run_id=run.pk,
                execution=claim.execution,
                error={"item": None, "error": type(exc).__name__, "message": str(exc)},
            )


@db_task(retries=0)
def execute_shard(run_id: int, index: int) -> str:
    """One part of a run split over the consumers: claimed like a run, its items done, the run
    ended by the last part to finish."""
    with execution.shard_claimed(run_id=run_id, index=index, stale_after_s=settings.RUN_STALE_AFTER_S) as claim:
        if claim is None:
            return "not claimed"
        return _execute(claim, None)


def _execute(claim: execution.Claim, backend) -> str:
    run, run_id, mine, shard = claim.run, claim.run.pk, claim.execution, claim.shard
    cancelled, superseded = claim.cancelled, claim.superseded
    try:
        try:
            ctx = RunContext(run, settings.INFERENCE_BACKEND)
            # `backend` (tests) serves both sides; else what the run names, the default otherwise.
            backend = backend or backends_for_run(run.params or {})
            total, items = run_items(ctx)
            items = list(items)
            if shard is not None:  # this part's items only
                shards = execution.run_shards(run)
                items = [item for item in items if execution.shard_of(item[0], shards) == shard]
        except Exception as exc:
            log.exception("run %s could not start", run_id)
            execution.run_fail(
                run_id=run_id,
                execution=mine,
                error={"item": None, "error": type(exc).__name__, "message": str(exc)},
                shard=shard,
            )
            return "failed to start"
        if shard is None:  # a sharded run's counters were set when it was handed out
            execution.run_set_total(run_id=run_id, execution=mine, total=total, already_done=total - len(items))
        manager = TaskManager(
            backend,
            workers=int(run.params.get("workers", settings.PIPELINE_WORKERS)),
            is_cancelled=cancelled.is_set,
            on_thread_exit=connections.close_all,  # a finished thread's connections would stay open
            client=f"run-{run_id}",
        )
        for outcome in manager.run(items):
            if outcome.cancelled:
                continue
            error = outcome.failure.as_dict() if outcome.failure else None
            if outcome.failure:
                log.warning("run %s item %s failed: %s", run_id, outcome.key, outcome.failure.message)
            if not execution.run_item_finished(run_id=run_id, execution=mine, ok=outcome.ok, error=error, shard=shard):
                superseded.set()
                cancelled.set()
        if superseded.is_set():
            log.warning("run %s: execution %s was taken over; this worker stopped", run_id, mine)
            return "superseded"

        def recount() -> int:
            _, left = run_items(ctx)  # what the database holds, afresh (the items query it again)
            return total - len(list(left))

        if shard is not None:
            return execution.shard_finish(
                run_id=run_id, index=shard, execution=mine, cancelled=cancelled.is_set(), recount=recount
            )
        finished = execution.run_finish(run_id=run_id, execution=mine, done=recount(), cancelled=cancelled.is_set())
        return finished.status
    except execution.Superseded:
        log.warning("run %s: execution %s was taken over; this worker stopped", run_id, mine)
        return "superseded"


@db_periodic_task(crontab(minute="*"))
def resume_stale_runs() -> list[int]:
    """The watchdog, every minute: a run whose worker died (no heartbeat) is queued again and
    resumes where it stopped; one cancelled while its worker died ends as cancelled; one that
    failed only because the backend was unreachable resumes itself once the backend answers
    again (at most `execution.AUTO_RESUMES` times). First, this queue's heartbeat (/readyz)."""
    health.heartbeat_record("queue:pipeline")
    for run_id in execution.runs_stale_cancelled_finish(stale_after_s=settings.RUN_STALE_AFTER_S):
        log.warning("run %s was cancelled and lost its worker; it ends as cancelled", run_id)
        version = GeneratorVersion.objects.filter(train_run_id=run_id, status=GeneratorVersion.Status.TRAINING).first()
        if version is not None:  # its version must not stay "training" for ever
            training_services.version_status(
                version=version,
                status=GeneratorVersion.Status.FAILED,
                error=f"cancelled, and its worker died; resume run #{run_id} to continue from its last checkpoint",
            )
    stale = execution.runs_stale(stale_after_s=settings.RUN_STALE_AFTER_S)
    for run_id in stale:
        log.warning("run %s lost its worker; resuming", run_id)
        queue_run(run_id)
    for run_id, index in execution.shards_stale(stale_after_s=settings.RUN_STALE_AFTER_S):
        log.warning("run %s part %s lost its worker; queued again for another", run_id, index)
        execute_shard(run_id, index)
    resumed = resume_after_outage()
    return stale + resumed


def resume_after_outage(backend=None) -> list[int]:
    candidates = execution.runs_failed_on_outage()
    if not candidates or not (backend or get_backend()).health().ready:
        return []
    resumed = []
    for run_id in candidates:
        if not execution.run_count_auto_resume(run_id=run_id):
            continue
        try:
            run_services.run_resume(run=PipelineRun.objects.get(pk=run_id))
        except ValidationError:
            continue  # resumed or changed meanwhile
        log.warning("run %s failed while the backend was down; it is back, resuming", run_id)
        resumed.append(run_id)
    return resumed


@db_task(retries=0)
def campaign_poll(campaign_id: int) -> str:
    """Move a campaign's open round on as far as it can go, then look again in CAMPAIGN_POLL_S
    while it waits for something (one chain of these a campaign: `runner.poll_claim`)."""
    try:
        said = campaign_runner.advance(campaign_id)
    except Exception:  # a database hiccup, say: logged, and the next poll tries again
        log.exception("campaign %s: advancing failed; trying again", campaign_id)
        said = "advancing failed"
    if campaign_runner.poll_claim(campaign_id, settings.CAMPAIGN_POLL_S):
        campaign_poll.schedule((campaign_id,), delay=settings.CAMPAIGN_POLL_S)
    return said


@db_periodic_task(crontab(minute="*"))
def resume_campaigns() -> list[int]:
    """The campaigns' watchdog, every minute: a campaign whose chain of polls was lost (its
    consumer died) or never began is looked at again."""
    due = campaign_runner.campaigns_due()
    for campaign_id in due:
        campaign_poll(campaign_id)
    return due


@HUEY.on_startup()
def _check_for_orphans_soon() -> None:
    health.heartbeat_record("queue:pipeline")  # alive (/readyz), before the first minute's watchdog
    # A consumer that just started may be replacing one that died mid-run; look
    # again once such a run's heartbeat has had time to go stale.
    resume_stale_runs.schedule(delay=settings.RUN_STALE_AFTER_S + 1)
