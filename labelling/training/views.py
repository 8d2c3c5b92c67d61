"""The training curve fragment: the run page polls it while a train run runs."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from labelling.access.decorators import admin_required
from labelling.models import PipelineRun
from labelling.training import charts, selectors


@require_GET
@admin_required
def training_curve(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun, pk=run_id, kind=PipelineRun.Kind.TRAIN)
    return render(request, "partials/training_curve.html", training_context(run))


def training_context(run: PipelineRun) -> dict:
    curve = selectors.training_curve(run.pk)
    return {
        "run": run,
        "version": selectors.train_run_version(run),
        "curve": curve,
        "last": curve[-1] if curve else None,
        "lines": charts.curve_lines(curve),
    }
