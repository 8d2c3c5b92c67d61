"""Huey tasks that execute pipeline runs, and the watchdog that resumes orphaned ones."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connections
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from inference import execution
from inference.backends import get_backend
from inference.dispatch import TaskManager
from inference.pipelines import RunContext, run_items

log = logging.getLogger(__name__)


@db_task(retries=0)
def execute_run(run_id: int) -> str:
    return execute(run_id)


def execute(run_id: int, backend=None) -> str:
    """Run every missing item of a run. Safe to call twice: only one caller claims it."""
    run = execution.run_claim(run_id=run_id, stale_after_s=settings.RUN_STALE_AFTER_S)
    if run is None:
        return "not claimed"
    backend = backend or get_backend()
    cancelled = threading.Event()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(run_id, cancelled, stop), daemon=True)
    beat.start()
    try:
        try:
            ctx = RunContext(run, settings.INFERENCE_BACKEND)
            total, items = run_items(ctx)
            items = list(items)
        except Exception as exc:
            log.exception("run %s could not start", run_id)
            execution.run_fail(run_id=run_id, error={"item": None, "error": type(exc).__name__, "message": str(exc)})
            return "failed to start"
        execution.run_set_total(run_id=run_id, total=total, already_done=total - len(items))
        manager = TaskManager(
            backend,
            workers=int(run.params.get("workers", settings.PIPELINE_WORKERS)),
            is_cancelled=cancelled.is_set,
            on_thread_exit=connections.close_all,  # a finished thread's connections would stay open
        )
        for outcome in manager.run(items):
            if outcome.cancelled:
                continue
            error = outcome.failure.as_dict() if outcome.failure else None
            if outcome.failure:
                log.warning("run %s item %s failed: %s", run_id, outcome.key, outcome.failure.message)
            execution.run_item_finished(run_id=run_id, ok=outcome.ok, error=error)
        finished = execution.run_finish(run_id=run_id, cancelled=cancelled.is_set())
        return finished.status
    finally:
        stop.set()
        beat.join(timeout=5)


def _heartbeat(run_id: int, cancelled: threading.Event, stop: threading.Event) -> None:
    try:
        while not stop.wait(settings.RUN_HEARTBEAT_S):
            if execution.run_heartbeat(run_id=run_id):
                cancelled.set()
    finally:
        connections.close_all()


@db_periodic_task(crontab(minute="*"))
def resume_stale_runs() -> list[int]:
    """Runs whose worker died (no heartbeat) are queued again; they resume where they stopped."""
    stale = execution.runs_stale(stale_after_s=settings.RUN_STALE_AFTER_S)
    for run_id in stale:
        log.warning("run %s lost its worker; resuming", run_id)
        execute_run(run_id)
    return stale


@HUEY.on_startup()
def _check_for_orphans_soon() -> None:
    # A consumer that just started may be replacing one that died mid-run; look
    # again once such a run's heartbeat has had time to go stale.
    resume_stale_runs.schedule(delay=settings.RUN_STALE_AFTER_S + 1)
