"""Run reads: the latest runs, the dashboard's counts of what runs produced, and what a run's
page shows (its groups with their scores, its settings as rows)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum

from labelling import clock
from labelling.explorer.selectors import group_cards
from labelling.models import Generation, Group, Judgment, PipelineRun, RunShard
from labelling.runs import idempotency


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
    seconds = ((run.finished_at or clock.now()) - run.started_at).total_seconds()
    return {"tokens": tokens, "per_s": tokens / seconds if seconds > 0 else 0.0}


def run_parts(run: PipelineRun) -> list[dict]:
    """A run spread over several consumers (PIPELINE_SHARDS): each part's state, for the run page
    and the API alike; none for a run in one piece. `claims` counts the part's claims (more
    than one: taken over); a running part `stale` has not beaten within RUN_STALE_AFTER_S (by the
    database's clock), so the watchdog gives it to another consumer."""
    if (run.params or {}).get("shards", 1) <= 1:
        return []
    stale_before = clock.now() - timedelta(seconds=settings.RUN_STALE_AFTER_S)
    return [
        {
            "index": part.index,
            "status": part.status,
            "claims": part.execution,
            "heartbeat_at": part.heartbeat_at,
            "done_items": part.done_items,
            "failed_items": part.failed_items,
            "stale": part.status == RunShard.Status.RUNNING
            and (part.heartbeat_at is None or part.heartbeat_at < stale_before),
        }
        for part in RunShard.objects.filter(run=run).order_by("index")
    ]


# What the run page lists in its settings table: a run's params, one row per setting. A value
# that is not a plain number, word or flag (a nested list, a long text) goes to the raw rest.
PARAM_LABELS = {
    "sampling.max_tokens": "max tokens",
    "sampling.temperature": "temperature",
    "sampling.top_p": "top p",
    "sampling.seed": "seed",
    "revise": "revise weak completions",
    "revise_threshold": "revise under",
    "max_rounds": "revision rounds",
    "review_overlap": "reviewers per group",
    "generator_version": "model version",
    "generator_endpoint": "generate through",
    "judge_endpoint": "judge through",
    "method": "method",
    "dataset": "dataset",
    "from_version": "trained from version",
    "version": "makes version",
    "shards": "parts (one per consumer)",
}
SHORT_VALUE = 120


def run_settings(run: PipelineRun) -> dict:
    """The run's params as readable rows (`rows`: label, value), the reward or judging rubric
    as a criteria table (`rubric`: a spec, or None), what applies to the kind (`rubric_note`),
    and whatever did not fit a row (`rest`, shown raw)."""
    params = dict(run.params or {})
    spec = params.pop("rubric_spec", None)
    rows, rest = [], {}
    if idempotency.FINGERPRINT in params:  # bookkeeping, not a setting
        rest[idempotency.FINGERPRINT] = params.pop(idempotency.FINGERPRINT)
    for key, value in params.items():
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in pairs:
            name = f"{key}.{sub}" if sub is not None else key
            if isinstance(item, bool | int | float) or (isinstance(item, str) and len(item) <= SHORT_VALUE):
                rows.append((PARAM_LABELS.get(name, name.replace("_", " ")), item))
            elif sub is None:
                rest[key] = item
            else:
                rest.setdefault(key, {})[sub] = item
    if spec is None and run.rubric is not None:
        spec = run.rubric.as_spec()
    return {"rows": rows, "rubric": spec, "rubric_note": _rubric_note(run, spec), "rest": rest}


def _rubric_note(run: PipelineRun, spec: dict | None) -> str:
    kind = PipelineRun.Kind
    if run.kind == kind.TRAIN:
        if spec:
            return f"reward rubric {spec.get('slug', '')} v{spec.get('version', '')} (judge and rule criteria)"
        return f"no reward rubric: {(run.params or {}).get('method', 'this method')} learns from the dataset's rows"
    if spec:
        return f"{spec.get('slug', '')} v{spec.get('version', '')}: the judge scores every completion"
    if run.kind == kind.GENERATE:
        return "none: completions are not judged by this run"
    return "none"


GROUPS_SHOWN = 50


def run_groups(run: PipelineRun) -> dict:
    """The run page's groups (the first GROUPS_SHOWN): each with its completions and their
    scores, and the slots still open while the run goes on (where streamed tokens land). A
    judge or revise run shows its source run's groups, scored against its rubric."""
    shown = run
    if run.kind in (PipelineRun.Kind.JUDGE, PipelineRun.Kind.REVISE) and run.source_run_id:
        shown = run.source_run
    groups = list(Group.objects.filter(run=shown).select_related("prompt").order_by("id")[:GROUPS_SHOWN])
    rows = group_cards(groups, run.rubric)
    live = not run.is_finished
    cards = []
    for group in groups:
        mine = rows.get(group.pk, [])
        taken = {row.generation.index for row in mine if row.generation.revision == 0}
        open_slots = [i for i in range(group.size) if i not in taken] if live else []
        cards.append({"group": group, "rows": mine, "open_slots": open_slots})
    total = len(groups) if len(groups) < GROUPS_SHOWN else Group.objects.filter(run=shown).count()
    return {"cards": cards, "groups_run": shown, "shown_groups": len(groups), "group_total": total}
