"""Run execution: the row of a run a worker executes, kept honest.

Claimed by one worker at a time (a conditional UPDATE), alive while its heartbeat is
fresh, progress counted as items finish, and a final status that says what happened;
live events are sent after each commit. Starting, resuming and cancelling a run are the
user's side (`labelling.runs.services`); the huey tasks in `inference.tasks` call these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from labelling.live import broadcasts
from labelling.models import PipelineRun

RUN_STALE_AFTER_S = 60
RUN_ERRORS_KEPT = 500


def run_claim(*, run_id: int, stale_after_s: int = RUN_STALE_AFTER_S) -> PipelineRun | None:
    """Take a run for this worker: a conditional UPDATE, so of two workers (or a
    retried huey message) exactly one proceeds. A running run whose worker stopped
    beating is taken over."""
    now = timezone.now()
    stale = now - timedelta(seconds=stale_after_s)
    claimable = Q(status=PipelineRun.Status.QUEUED) | Q(status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale)
    claimed = PipelineRun.objects.filter(claimable, pk=run_id, cancel_requested=False).update(
        status=PipelineRun.Status.RUNNING, heartbeat_at=now, started_at=Coalesce("started_at", now)
    )
    if not claimed:
        return None
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    return PipelineRun.objects.get(pk=run_id)


def runs_stale(*, stale_after_s: int = RUN_STALE_AFTER_S) -> list[int]:
    stale = timezone.now() - timedelta(seconds=stale_after_s)
    return list(
        PipelineRun.objects.filter(status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale).values_list(
            "pk", flat=True
        )
    )


def run_heartbeat(*, run_id: int) -> bool:
    """Mark the run alive; returns whether cancellation was requested."""
    PipelineRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
    return PipelineRun.objects.filter(pk=run_id, cancel_requested=True).exists()


@transaction.atomic
def run_set_total(*, run_id: int, total: int, already_done: int) -> None:
    PipelineRun.objects.filter(pk=run_id).update(total_items=total, done_items=already_done, failed_items=0)
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


@transaction.atomic
def run_item_finished(*, run_id: int, ok: bool, error: Mapping | None = None) -> None:
    """Count one finished item; a failure is recorded with what it was for."""
    if ok:
        PipelineRun.objects.filter(pk=run_id).update(done_items=F("done_items") + 1)
    else:
        run = PipelineRun.objects.select_for_update().get(pk=run_id)
        run.failed_items += 1
        if error is not None and len(run.errors) < RUN_ERRORS_KEPT:
            run.errors = [*run.errors, {**error, "at": timezone.now().isoformat()}]
        run.save(update_fields=["failed_items", "errors"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


@transaction.atomic
def run_finish(*, run_id: int, cancelled: bool = False) -> PipelineRun:
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    if cancelled or run.cancel_requested:
        run.status = PipelineRun.Status.CANCELLED
    elif run.failed_items == 0:
        run.status = PipelineRun.Status.SUCCEEDED
    elif run.done_items == 0:
        run.status = PipelineRun.Status.FAILED
    else:
        run.status = PipelineRun.Status.PARTIAL
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    return run


@transaction.atomic
def run_fail(*, run_id: int, error: Mapping) -> None:
    """The run could not even start its items (e.g. its rubric lost its criteria)."""
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    run.status = PipelineRun.Status.FAILED
    run.finished_at = timezone.now()
    run.errors = [*run.errors, {**error, "at": timezone.now().isoformat()}][-RUN_ERRORS_KEPT:]
    run.save(update_fields=["status", "finished_at", "errors"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
