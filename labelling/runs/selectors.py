"""Run reads: the latest runs and the dashboard's counts of what runs produced."""

from __future__ import annotations

from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from labelling.models import Generation, Group, Judgment, PipelineRun


def dashboard_counts() -> dict[str, int]:
    groups = Group.objects.aggregate(
        total=Count("id"),
        awaiting=Count("id", filter=Q(review_count__lt=F("overlap_target"))),
    )
    return {
        "groups": groups["total"],
        "groups_awaiting_review": groups["awaiting"],
        "generations": Generation.objects.count(),
        "human_judgments": Judgment.objects.filter(source=Judgment.Source.HUMAN).count(),
        "judge_judgments": Judgment.objects.filter(source=Judgment.Source.JUDGE).count(),
    }


def recent_runs() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("character", "prompt_set", "rubric").order_by("-created_at")


def run_throughput(run: PipelineRun) -> dict | None:
    """Tokens the run's generations hold and their rate over the run's time so far (or in all)."""
    if run.started_at is None or run.kind == PipelineRun.Kind.TRAIN:
        return None
    tokens = Generation.objects.filter(run=run).aggregate(total=Sum("completion_tokens"))["total"] or 0
    seconds = ((run.finished_at or timezone.now()) - run.started_at).total_seconds()
    return {"tokens": tokens, "per_s": tokens / seconds if seconds > 0 else 0.0}
