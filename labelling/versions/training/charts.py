"""The training curve: the numbers behind a train run's charts (`training_series`, the one
read that the run page's charts and the API share), the runs a chart may lay over it, and the
SVG polylines drawn on the server where no script runs (the run page without scripts, the
/models/ page's sparklines)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Exists, OuterRef

from labelling.models import GeneratorVersion, PipelineRun, TrainingStep
from labelling.versions.training import selectors

SERIES = (
    ("reward_mean", "reward (mean)"),
    ("loss", "loss"),
    ("kl", "KL to the parent"),
)

# What a logged step may carry, in the order the charts show them.
METRICS = ("reward_mean", "reward_std", "loss", "kl", "tokens_per_s")

OVERLAY_LIMIT = 20  # the train runs a chart offers to lay over its own, the latest first


def run_label(run_id: int, version: GeneratorVersion | None) -> str:
    if version is None:
        return f"run #{run_id}"
    return f"run #{run_id} · v{version.number} {version.get_method_display()}"


def _finite(value: float | None) -> float | None:
    # A trainer can log NaN or infinity (a diverged loss): neither is JSON, and neither can be
    # drawn, so they are gaps like a step that logged nothing.
    return value if value is None or math.isfinite(value) else None


def training_series(run: PipelineRun) -> dict:
    """A train run's logged steps as columns, oldest first: `steps` and, per metric of METRICS,
    one value per step (None where that step logged none), with what the run is (its label,
    status, the version it makes and the train run of that version's parent). Plain JSON."""
    return series_of(run, selectors.train_run_version(run), selectors.training_curve(run.pk))


def series_of(run: PipelineRun, version: GeneratorVersion | None, rows: list[dict]) -> dict:
    """training_series from what a caller has already read (the run's version and its curve)."""
    parent = version.parent if version else None
    last = rows[-1] if rows else None
    return {
        "run": run.pk,
        "label": run_label(run.pk, version),
        "status": run.status,
        "finished": run.is_finished,
        "total_steps": run.total_items,
        "version": None
        if version is None
        else {
            "number": version.number,
            "method": version.method,
            "status": version.status,
            "parent": parent.number if parent else None,
        },
        "parent_run": parent.train_run_id if parent else None,
        "steps": [row["step"] for row in rows],
        "metrics": {key: [_finite(row[key]) for row in rows] for key in METRICS},
        "last": None if last is None else {key: _finite(value) for key, value in last.items()},
    }


def overlay_runs(run: PipelineRun, version: GeneratorVersion | None) -> list[dict]:
    """The train runs with logged steps that a chart of `run` may lay over its own: the run that
    trained its version's parent first (when there is one), then the latest others."""
    parent_run = version.parent.train_run_id if version and version.parent else None
    others = list(
        PipelineRun.objects.filter(kind=PipelineRun.Kind.TRAIN)
        .filter(Exists(TrainingStep.objects.filter(run=OuterRef("pk"))))
        .exclude(pk=run.pk)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)[:OVERLAY_LIMIT]
    )
    if parent_run is not None and (parent_run in others or _has_steps(parent_run)):
        others = [parent_run, *(pk for pk in others if pk != parent_run)][:OVERLAY_LIMIT]
    versions = {v.train_run_id: v for v in GeneratorVersion.objects.filter(train_run_id__in=others)}
    return [{"run": pk, "label": run_label(pk, versions.get(pk)), "parent": pk == parent_run} for pk in others]


def _has_steps(run_id: int) -> bool:
    return TrainingStep.objects.filter(run_id=run_id).exists()


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    points: str  # "x,y x,y ..." in the chart's box
    first: float
    last: float
    low: float
    high: float


def curve_lines(curve: list[dict], width: int = 480, height: int = 140, pad: int = 6) -> list[Line]:
    """One line per series that has values, each scaled to its own range (they differ by orders
    of magnitude), steps on the x axis."""
    lines = []
    steps = [row["step"] for row in curve]
    if not steps:
        return lines
    x0, x1 = min(steps), max(steps)
    for key, label in SERIES:
        values = [(row["step"], v) for row in curve if (v := _finite(row.get(key))) is not None]
        if not values:
            continue
        low, high = min(v for _, v in values), max(v for _, v in values)
        span_y, span_x = (high - low) or 1.0, (x1 - x0) or 1

        def xy(step, value, low=low, span_y=span_y, span_x=span_x):
            x = pad + (step - x0) / span_x * (width - 2 * pad)
            y = height - pad - (value - low) / span_y * (height - 2 * pad)
            return f"{x:.1f},{y:.1f}"

        lines.append(
            Line(
                key=key,
                label=label,
                points=" ".join(xy(s, v) for s, v in values),
                first=values[0][1],
                last=values[-1][1],
                low=low,
                high=high,
            )
        )
    return lines
