"""What readiness reads and the consumers write: named heartbeats (`Heartbeat` rows).

`/readyz` writes "web" (proving a write commits) and asks `consumers_alive()`: a queue has a
live consumer when its heartbeat ("queue:pipeline", "queue:train") is recent, or when one of
its runs beats (a consumer whose every worker is busy with a long run still proves itself
through that run). The model side's consumers write theirs when they start and each minute
(inference.tasks, inference.train_queue).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from labelling import clock
from labelling.models import Heartbeat, PipelineRun

# Each queue, and the runs its consumers take.
QUEUES = {
    "pipeline": ~Q(kind=PipelineRun.Kind.TRAIN),
    "train": Q(kind=PipelineRun.Kind.TRAIN),
}


def heartbeat_record(name: str) -> None:
    """`name` is alive now (a write that commits)."""
    Heartbeat.objects.update_or_create(name=name, defaults={"at": clock.now()})


def consumers_alive() -> dict[str, bool]:
    """Each queue readiness asks for (READY_QUEUES): whether a consumer proved itself within
    CONSUMER_HEARTBEAT_MAX_AGE_S."""
    since = clock.now() - timedelta(seconds=settings.CONSUMER_HEARTBEAT_MAX_AGE_S)
    return {
        queue: Heartbeat.objects.filter(name=f"queue:{queue}", at__gte=since).exists()
        or PipelineRun.objects.filter(runs, status=PipelineRun.Status.RUNNING, heartbeat_at__gte=since).exists()
        for queue, runs in QUEUES.items()
        if queue in settings.READY_QUEUES
    }
