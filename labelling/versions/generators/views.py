"""The model versions page (admins): the generator's lineage, v1 -> v2 -> ..., with each
version's dataset, method, status and which one is current."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labelling.access.decorators import admin_required
from labelling.models import DatasetVersion, Evaluation, GeneratorVersion
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.generators import selectors
from labelling.versions.training import charts
from labelling.versions.training import selectors as training_selectors


def _reward_by_version(versions) -> dict | None:
    """Mean reward along the lineage, from each version's evaluation against its parent (the
    first one also gives its parent's): an SVG polyline, or None with fewer than two points."""
    points: dict[int, float] = {}
    for v in versions:
        f = v.against_parent
        if f:
            points.setdefault(f["baseline"], f["reward_baseline"])
            points[v.number] = f["reward_candidate"]
    if len(points) < 2:
        return None
    curve = [{"step": n, "reward_mean": r} for n, r in sorted(points.items())]
    line = charts.curve_lines(curve, 320, 80, 6)[0]
    return {"line": line, "points": sorted(points.items())}


TRAINABLE = (DatasetVersion.Kind.GRPO_PROMPTS, DatasetVersion.Kind.DPO, DatasetVersion.Kind.SFT)


@require_GET
@admin_required
def model_versions(request: HttpRequest) -> HttpResponse:
    return model_versions_page(request)


def model_versions_page(request: HttpRequest, *, train_form=None, train_errors=None, status: int = 200) -> HttpResponse:
    versions = list(selectors.generator_versions())
    evaluated = evaluation_selectors.against_parent(versions)
    for v in versions:
        v.against_parent = evaluation_selectors.figures(evaluated.get(v.pk))
    for v in versions:  # each trained version's curve, as a sparkline: reward if it has one, else loss
        lines = (
            charts.curve_lines(training_selectors.training_curve(v.train_run_id), 160, 36, 2) if v.train_run_id else []
        )
        v.curve = lines[0] if lines else None
    context = {
        "versions": versions,
        "reward_line": _reward_by_version(versions),
        "ready": [v for v in versions if v.status == GeneratorVersion.Status.READY],
        "datasets": DatasetVersion.objects.filter(kind__in=TRAINABLE).order_by("dataset", "-number")[:200],
        "evaluations": Evaluation.objects.select_related("candidate", "baseline", "prompt_set")[:20],
        "train_form": train_form or {},
        "train_errors": train_errors or {},
    }
    return render(request, "generators/list.html", context, status=status)
