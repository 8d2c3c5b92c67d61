"""Run execution: the row of a run a worker executes, kept honest.

Claimed by one worker at a time (a conditional UPDATE), alive while its heartbeat is
fresh, progress counted as items finish, and a final status that says what happened;
live events are sent after each commit. Starting, resuming and cancelling a run are the
user's side (`labelling.runs.services`); the huey tasks in `inference.tasks` call these.

A run split into parts (`RunShard`, PIPELINE_SHARDS) is claimed, kept alive, counted and
finished by part with the same rules, each part with its own execution number.

One module (over 400 lines): a run's and a part's claims, heartbeats, counts and finish are one
set of rules over the same two rows, taken in the same order (the run's row, then the part's);
apart, each half would import the other.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Least

from labelling import clock
from labelling import errors as labelling_errors
from labelling.live import broadcasts
from labelling.models import PipelineRun, RunShard
from labelling.versions.evaluation import services as evaluation_services

logger = logging.getLogger(__name__)

RUN_STALE_AFTER_S = 60
RUN_ERRORS_KEPT = 500


def run_claim(*, run_id: int, stale_after_s: int = RUN_STALE_AFTER_S) -> PipelineRun | None:
    """Take a run for this worker: a conditional UPDATE, so of two workers (or a
    retried huey message) exactly one proceeds. A running run whose worker stopped
    beating is taken over.

    Each claim raises the run's `execution` number; the worker passes the number it got to
    every later write, so a worker that lost its claim (it stalled past the stale window and
    was taken over) can no longer count items, finish the run or keep it alive: it stops."""
    now = clock.now()
    stale = now - timedelta(seconds=stale_after_s)
    claimable = Q(status=PipelineRun.Status.QUEUED) | Q(status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale)
    claimed = PipelineRun.objects.filter(claimable, pk=run_id, cancel_requested=False).update(
        status=PipelineRun.Status.RUNNING,
        heartbeat_at=now,
        started_at=Coalesce("started_at", now),
        execution=F("execution") + 1,
    )
    if not claimed:
        return None
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    return PipelineRun.objects.get(pk=run_id)


@dataclass(frozen=True)
class Claim:
    """A run this worker holds (or one part of it, `shard`): its row as claimed, the execution
    number every write passes (the part's, for a part), and the heartbeat's signals
    (`cancelled`: asked to stop; `superseded`: another worker took it)."""

    run: PipelineRun
    execution: int
    cancelled: threading.Event
    superseded: threading.Event
    shard: int | None = None


# --- runs spread over consumers (RunShard) ------------------------------------------------


def run_shards(run: PipelineRun) -> int:
    """How many parts the run is split into (recorded when it started; 1: run whole)."""
    try:
        return max(1, int((run.params or {}).get("shards", 1)))
    except (TypeError, ValueError):
        return 1


def shard_of(key: object, shards: int) -> int:
    """The part an item belongs to: a hash of its key (`prompt:<id>`, `generation:<pk>`), the same
    on every host and at every resume."""
    return zlib.crc32(str(key).encode()) % shards


def shards_prepare(*, run_id: int, total: int, missing: int) -> list[int]:
    """A sharded run handed to the consumers: its parts' rows exist, and for a queued run (new,
    or resumed) they start afresh with the run's counters (`missing` items of `total` to do).
    The parts still to finish, to be queued; [] when the run is not to run (finished, cancelled)."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().filter(pk=run_id).first()
        if (
            run is None
            or run.cancel_requested
            or run.status not in (PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING)
        ):
            return []
        shards = run_shards(run)
        for index in range(shards):
            RunShard.objects.get_or_create(run=run, index=index)
        if run.status == PipelineRun.Status.QUEUED:
            RunShard.objects.filter(run=run).update(status=RunShard.Status.QUEUED, done_items=0, failed_items=0)
            PipelineRun.objects.filter(pk=run_id).update(total_items=total, done_items=total - missing, failed_items=0)
            transaction.on_commit(lambda: broadcasts.run_changed(run_id))
        return list(
            RunShard.objects.filter(run=run).exclude(status=RunShard.Status.DONE).values_list("index", flat=True)
        )


def shard_claim(*, run_id: int, index: int, stale_after_s: int = RUN_STALE_AFTER_S) -> RunShard | None:
    """Take one part of a run, as `run_claim` takes a run: a queued part, or a running one whose
    worker stopped beating; the first part taken sets the run running. None when another worker
    holds it, it is done, or the run is not to run."""
    now = clock.now()
    stale = now - timedelta(seconds=stale_after_s)
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().filter(pk=run_id).first()
        if run is not None and run.cancel_requested and run.status == PipelineRun.Status.RUNNING:
            _shard_cancelled_unstarted(run, index)
            return None
        if (
            run is None
            or run.cancel_requested
            or run.status not in (PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING)
        ):
            return None
        claimable = Q(status=RunShard.Status.QUEUED) | Q(status=RunShard.Status.RUNNING, heartbeat_at__lt=stale)
        if not RunShard.objects.filter(claimable, run_id=run_id, index=index).update(
            status=RunShard.Status.RUNNING, heartbeat_at=now, execution=F("execution") + 1
        ):
            return None
        if run.status == PipelineRun.Status.QUEUED:
            PipelineRun.objects.filter(pk=run_id).update(
                status=PipelineRun.Status.RUNNING,
                heartbeat_at=now,
                started_at=Coalesce("started_at", now),
                execution=F("execution") + 1,
            )
        else:
            PipelineRun.objects.filter(pk=run_id).update(heartbeat_at=now)
        transaction.on_commit(lambda: broadcasts.run_changed(run_id))
        return RunShard.objects.get(run_id=run_id, index=index)


def _shard_cancelled_unstarted(run: PipelineRun, index: int) -> None:
    """A part nobody had started when its run was cancelled is done without running; if it was
    the last, the run ends as cancelled (else the parts at work end it)."""
    RunShard.objects.filter(run=run, index=index, status=RunShard.Status.QUEUED).update(status=RunShard.Status.DONE)
    if not RunShard.objects.filter(run=run).exclude(status=RunShard.Status.DONE).exists():
        run_finish(run_id=run.pk, execution=run.execution, cancelled=True)


def shards_stale(*, stale_after_s: int = RUN_STALE_AFTER_S) -> list[tuple[int, int]]:
    """(run, part) of running runs whose part's worker stopped beating while another part's goes
    on (the run itself looks alive): to be queued again and taken over."""
    stale = clock.now() - timedelta(seconds=stale_after_s)
    return list(
        RunShard.objects.filter(
            status=RunShard.Status.RUNNING,
            heartbeat_at__lt=stale,
            run__status=PipelineRun.Status.RUNNING,
            run__cancel_requested=False,
        ).values_list("run_id", "index")
    )


@transaction.atomic
def shard_finish(*, run_id: int, index: int, execution: int, cancelled: bool, recount) -> str:
    """This part is done. The last part to finish ends the run, with `recount()` (the items the
    database holds complete, counted afresh over every part) as `run_finish` does. Returns the
    run's status once ended, "part done" while other parts work, "superseded" for a worker that
    lost its claim."""
    # The run's row first (parts finishing together: one at a time), then the part's.
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    ended = RunShard.objects.filter(
        run_id=run_id, index=index, execution=execution, status=RunShard.Status.RUNNING
    ).update(status=RunShard.Status.DONE, heartbeat_at=clock.now())
    if not ended:
        return "superseded"
    if RunShard.objects.filter(run_id=run_id).exclude(status=RunShard.Status.DONE).exists():
        return "part done"
    return run_finish(run_id=run_id, execution=run.execution, done=recount(), cancelled=cancelled).status


@contextmanager
def shard_claimed(*, run_id: int, index: int, stale_after_s: int = RUN_STALE_AFTER_S) -> Iterator[Claim | None]:
    """`run_claimed` for one part of a run."""
    shard = shard_claim(run_id=run_id, index=index, stale_after_s=stale_after_s)
    if shard is None:
        yield None
        return
    run = PipelineRun.objects.get(pk=run_id)
    logger.info("run %s (%s) part %s: claimed, execution %s", run_id, run.kind, index, shard.execution)
    claim = Claim(run, shard.execution, threading.Event(), threading.Event(), shard=index)
    with _heartbeat(claim):
        yield claim


@contextmanager
def _heartbeat(claim: Claim) -> Iterator[None]:
    stop = threading.Event()
    beat = threading.Thread(
        target=heartbeat_loop,
        args=(claim.run.pk, claim.execution, claim.cancelled, claim.superseded, stop),
        kwargs={"shard": claim.shard},
        daemon=True,
    )
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join(timeout=5)


@contextmanager
def run_claimed(*, run_id: int, stale_after_s: int = RUN_STALE_AFTER_S) -> Iterator[Claim | None]:
    """Claim the run (`run_claim`) and keep it alive with a heartbeat thread while the block runs;
    None when another worker holds it. The one claim-and-heartbeat of the pipeline and training
    workers."""
    run = run_claim(run_id=run_id, stale_after_s=stale_after_s)
    if run is None:
        yield None
        return
    # Which consumer runs what: each host's log says which runs it claimed.
    logger.info("run %s (%s): claimed, execution %s", run_id, run.kind, run.execution)
    claim = Claim(run, run.execution, threading.Event(), threading.Event())
    with _heartbeat(claim):
        yield claim


def runs_stale(*, stale_after_s: int = RUN_STALE_AFTER_S, train: bool = False) -> list[int]:
    """Running runs whose worker stopped beating, to be taken over (a cancelled one is not:
    `runs_stale_cancelled_finish` ends those): train runs with `train`, the others without
    (each queue's consumers look after their own)."""
    stale = clock.now() - timedelta(seconds=stale_after_s)
    runs = PipelineRun.objects.filter(status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale, cancel_requested=False)
    runs = runs.filter(kind=PipelineRun.Kind.TRAIN) if train else runs.exclude(kind=PipelineRun.Kind.TRAIN)
    return list(runs.values_list("pk", flat=True))


def runs_stale_cancelled_finish(*, stale_after_s: int = RUN_STALE_AFTER_S) -> list[int]:
    """A run cancelled while its worker died has nobody left to notice the request: it ends
    as cancelled here (and its execution number moves on, should that worker wake up)."""
    stale = clock.now() - timedelta(seconds=stale_after_s)
    ended = []
    for run_id in PipelineRun.objects.filter(
        status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale, cancel_requested=True
    ).values_list("pk", flat=True):
        with transaction.atomic():
            if PipelineRun.objects.filter(
                pk=run_id, status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale, cancel_requested=True
            ).update(status=PipelineRun.Status.CANCELLED, finished_at=clock.now(), execution=F("execution") + 1):
                ended.append(run_id)
                transaction.on_commit(lambda run_id=run_id: broadcasts.run_changed(run_id))
    return ended


OUTAGE_ERRORS = {"BackendUnavailable", "ModelNotReady"}
AUTO_RESUMES = 3
AUTO_RESUME_WITHIN = timedelta(hours=24)


def runs_failed_on_outage() -> list[int]:
    """Failed or partial runs of the last day whose every failure was the backend being
    unreachable or not ready, resumed automatically fewer than AUTO_RESUMES times."""
    since = clock.now() - AUTO_RESUME_WITHIN
    candidates = PipelineRun.objects.filter(
        status__in=[PipelineRun.Status.FAILED, PipelineRun.Status.PARTIAL], finished_at__gte=since
    ).values_list("pk", "errors", "params")
    return [
        pk
        for pk, errors, params in candidates
        if errors
        and {e.get("error") for e in errors} <= OUTAGE_ERRORS
        and int((params or {}).get("auto_resumed", 0)) < AUTO_RESUMES
    ]


@transaction.atomic
def run_count_auto_resume(*, run_id: int) -> bool:
    """Count an automatic resume on the run (kept in its params); False if it is no longer due."""
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    done = int(run.params.get("auto_resumed", 0))
    if run.status not in (PipelineRun.Status.FAILED, PipelineRun.Status.PARTIAL) or done >= AUTO_RESUMES:
        return False
    run.params = {**run.params, "auto_resumed": done + 1}
    run.save(update_fields=["params"])
    return True


class Superseded(Exception):
    """This worker's claim on the run is no longer current: another execution took it over."""


def run_heartbeat(*, run_id: int, execution: int, shard: int | None = None) -> bool:
    """Mark the run (or its part `shard`, and the run with it) alive; returns whether
    cancellation was requested. Raises Superseded when this worker's claim was taken over."""
    now = clock.now()
    if shard is None:
        beat = PipelineRun.objects.filter(pk=run_id, execution=execution, status=PipelineRun.Status.RUNNING).update(
            heartbeat_at=now
        )
    else:
        beat = RunShard.objects.filter(
            run_id=run_id, index=shard, execution=execution, status=RunShard.Status.RUNNING
        ).update(heartbeat_at=now)
        if beat:  # a worker that lost its part keeps nothing alive
            PipelineRun.objects.filter(pk=run_id, status=PipelineRun.Status.RUNNING).update(heartbeat_at=now)
    if not beat:
        where = f"run {run_id}" if shard is None else f"run {run_id} part {shard}"
        raise Superseded(f"{where}: execution {execution} is no longer current")
    return PipelineRun.objects.filter(pk=run_id, cancel_requested=True).exists()


@transaction.atomic
def run_set_total(*, run_id: int, execution: int, total: int, already_done: int) -> None:
    updated = PipelineRun.objects.filter(pk=run_id, execution=execution).update(
        total_items=total, done_items=already_done, failed_items=0
    )
    if not updated:
        raise Superseded(f"run {run_id}: execution {execution} is no longer current")
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


@transaction.atomic
def run_item_finished(
    *, run_id: int, execution: int, ok: bool, error: Mapping | None = None, shard: int | None = None
) -> bool:
    """Count one finished item; a failure is recorded with what it was for (its message may
    quote the model or an endpoint: a NUL in it is stored as U+FFFD). Counts only for the
    current execution (of the run, or of its part `shard`) and never past the total; returns
    whether it counted."""
    mine = Q(pk=run_id, execution=execution, done_items__lt=F("total_items") - F("failed_items"))
    if shard is not None:
        # The run's row first, then the part's: the order every write to both takes (no deadlock).
        PipelineRun.objects.select_for_update().filter(pk=run_id).values_list("pk", flat=True).first()
        part = RunShard.objects.filter(run_id=run_id, index=shard, execution=execution, status=RunShard.Status.RUNNING)
        if not part.exists():
            return False
        mine = Q(pk=run_id, done_items__lt=F("total_items") - F("failed_items"))
    if ok:
        counted = PipelineRun.objects.filter(mine).update(done_items=F("done_items") + 1)
    else:
        run = PipelineRun.objects.select_for_update().filter(mine).first()
        counted = run is not None
        if counted:
            run.failed_items += 1
            if error is not None and len(run.errors) < RUN_ERRORS_KEPT:
                error = labelling_errors.nul_replaced(dict(error))
                run.errors = [*run.errors, {**error, "at": clock.now().isoformat()}]
            run.save(update_fields=["failed_items", "errors"])
    if counted:
        if shard is not None:
            field = "done_items" if ok else "failed_items"
            RunShard.objects.filter(run_id=run_id, index=shard).update(**{field: F(field) + 1})
        transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    return bool(counted)


@transaction.atomic
def run_finish(*, run_id: int, execution: int, done: int | None = None, cancelled: bool = False) -> PipelineRun:
    """End the run with a status that says what happened. `done` is the number of items the
    database holds complete, counted afresh: the counters end equal to what is stored.
    A worker whose claim was taken over finishes nothing."""
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    if run.execution != execution or run.status != PipelineRun.Status.RUNNING:
        return run
    if done is not None:
        run.done_items = min(done, run.total_items)
        if not (cancelled or run.cancel_requested):
            run.failed_items = run.total_items - run.done_items
        run.failed_items = min(run.failed_items, run.total_items - run.done_items)
    # A cancel that came after the last item was done stopped nothing: the run did it all.
    all_done = run.kind != PipelineRun.Kind.TRAIN and run.total_items > 0 and run.done_items == run.total_items
    if (cancelled or run.cancel_requested) and not all_done:
        run.status = PipelineRun.Status.CANCELLED
    elif run.failed_items == 0:
        run.status = PipelineRun.Status.SUCCEEDED
    elif run.done_items == 0:
        run.status = PipelineRun.Status.FAILED
    else:
        run.status = PipelineRun.Status.PARTIAL
    run.finished_at = clock.now()
    run.save(update_fields=["status", "finished_at", "done_items", "failed_items"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    transaction.on_commit(lambda: _evaluation_finish(run_id))
    return run


def _evaluation_finish(run_id: int) -> None:
    """Finish the evaluation this run is a side of. A failure here leaves the run as it is: the
    evaluation page and API finish it again when read."""
    try:
        evaluation_services.evaluation_run_finished(run_id)
    except Exception:  # noqa: BLE001 - logged; the run's own outcome stands
        logger.exception("finishing the evaluation of run %s failed", run_id)


@transaction.atomic
def run_fail(*, run_id: int, execution: int, error: Mapping, shard: int | None = None) -> None:
    """The run could not even start its items (e.g. its rubric lost its criteria); a NUL in the
    error (a trainer's stderr, say) is stored as U+FFFD. For a part (`shard`), the part is done
    and the run fails with it (every part would fail the same way)."""
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    if shard is not None:
        if not RunShard.objects.filter(run_id=run_id, index=shard, execution=execution).update(
            status=RunShard.Status.DONE
        ):
            return
    elif run.execution != execution:
        return
    run.status = PipelineRun.Status.FAILED
    run.finished_at = clock.now()
    error = labelling_errors.nul_replaced(dict(error))
    run.errors = [*run.errors, {**error, "at": clock.now().isoformat()}][-RUN_ERRORS_KEPT:]
    run.save(update_fields=["status", "finished_at", "errors"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


def heartbeat_loop(
    run_id: int,
    mine: int,
    cancelled: threading.Event,
    superseded: threading.Event,
    stop: threading.Event,
    shard: int | None = None,
) -> None:
    """The worker's sign of life, every RUN_HEARTBEAT_S, until `stop`: sets `cancelled` when the run
    is asked to stop, and `superseded` (and `cancelled`) when another worker took it (or its part) over."""
    try:
        while not stop.wait(settings.RUN_HEARTBEAT_S):
            try:
                if run_heartbeat(run_id=run_id, execution=mine, shard=shard):
                    cancelled.set()
            except Superseded:
                superseded.set()
                cancelled.set()
                return
    finally:
        connections.close_all()


@transaction.atomic
def run_progress(*, run_id: int, execution: int, done: int) -> None:
    """A train run's steps done so far (its items are its steps)."""
    updated = PipelineRun.objects.filter(pk=run_id, execution=execution, status=PipelineRun.Status.RUNNING).update(
        done_items=Least(done, F("total_items") - F("failed_items"))
    )
    if not updated:
        raise Superseded(f"run {run_id}: execution {execution} is no longer current")
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
