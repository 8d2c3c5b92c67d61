"""Train runs' own queue: only training consumers (`manage.py run_train_worker`) take from it,
so a GPU host can train against the shared PostgreSQL and Redis while CPU hosts keep serving
review, and a long training round never holds a pipeline worker.

The queue is a second huey instance named `<HUEY name>-train`, on the same Redis (or, on the
embedded defaults, a SQLite file beside huey's). `inference.tasks.queue_run` routes every run
(the executor seam and the watchdog): train runs here, the others on the pipeline queue.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from huey import RedisHuey, SqliteHuey, crontab
from huey.contrib.djhuey import close_db

from inference import execution
from labelling import health


def _make():
    config = settings.HUEY
    name = f"{config['name']}-train"
    if config.get("huey_class") == "huey.RedisHuey":
        return RedisHuey(name, url=config["url"], immediate=config.get("immediate", False))
    path = Path(config["filename"])
    return SqliteHuey(
        name, filename=str(path.with_name(f"{path.stem}-train{path.suffix}")), immediate=config.get("immediate", False)
    )


TRAIN_HUEY = _make()
log = logging.getLogger(__name__)


def _db_task(decorator):
    """A task of this queue that uses the database: connections closed around it, as djhuey's
    db_task does, and `call_local` the plain function (tests call it inside their transaction)."""

    def wrap(fn):
        task = decorator(close_db(fn))
        task.call_local = fn
        return task

    return wrap


@_db_task(TRAIN_HUEY.task(retries=0))
def execute_train(run_id: int) -> str:
    from inference.versions import train_runs  # the trainer itself runs in a child process

    return train_runs.execute(run_id)


@_db_task(TRAIN_HUEY.periodic_task(crontab(minute="*")))
def resume_stale_train_runs() -> list[int]:
    """The training consumers' own watchdog, every minute and soon after one starts: a train run
    whose worker died (no heartbeat) is queued again, and its trainer resumes from its last
    checkpoint. (Cancelled ones whose worker died are ended by the pipeline watchdog.) First,
    this queue's heartbeat (/readyz)."""
    health.heartbeat_record("queue:train")
    stale = execution.runs_stale(stale_after_s=settings.RUN_STALE_AFTER_S, train=True)
    for run_id in stale:
        log.warning("train run %s lost its worker; resuming from its last checkpoint", run_id)
        execute_train(run_id)
    return stale


@TRAIN_HUEY.on_startup()
def _check_for_orphans_soon() -> None:
    health.heartbeat_record("queue:train")  # alive (/readyz), before the first minute's watchdog
    # A training consumer that just started may be replacing one that died mid-round.
    resume_stale_train_runs.schedule(delay=settings.RUN_STALE_AFTER_S + 1)
