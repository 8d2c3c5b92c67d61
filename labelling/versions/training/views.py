"""A train run's training section (its charts, the status part the run page polls while it
trains, the numbers behind the charts as JSON) and the form that starts a train run (on
/models/)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from labelling import errors
from labelling.access.decorators import admin_required
from labelling.models import DatasetVersion, PipelineRun
from labelling.runs import idempotency
from labelling.versions.generators import views as generator_views
from labelling.versions.training import charts, selectors, services
from shaping_core import strict


@require_GET
@admin_required
def training_curve(request: HttpRequest, run_id: int) -> HttpResponse:
    """A train run's training section: whole, or its status part when htmx polls it while the
    run trains; with `?format=json`, the numbers behind its charts (charts.training_series)."""
    run = get_object_or_404(PipelineRun, pk=run_id, kind=PipelineRun.Kind.TRAIN)
    if request.GET.get("format") == "json":
        return JsonResponse(charts.training_series(run))
    template = "partials/training_curve.html" + ("#training-status" if request.htmx else "")
    response = render(request, template, training_context(run))
    patch_vary_headers(response, ("HX-Request",))
    return response


LAST_STEPS = 5  # the table that stands in for the charts where no script runs


def training_context(run: PipelineRun) -> dict:
    """What partials/training_curve.html draws: the run, its version, the logged steps (as rows
    and as the charts' columns), the SVG lines and the runs its charts may lay over it."""
    version = selectors.train_run_version(run)
    curve = selectors.training_curve(run.pk)
    overlays = [
        {**choice, "url": f"{reverse('training_curve', args=[choice['run']])}?format=json"}
        for choice in charts.overlay_runs(run, version)
    ]
    return {
        "run": run,
        "version": version,
        "curve": curve,
        "last": curve[-1] if curve else None,
        "last_steps": curve[-LAST_STEPS:],
        "lines": charts.curve_lines(curve),
        "series": charts.series_of(run, version, curve),
        "overlays": overlays,
    }


@require_POST
@admin_required
def train_new(request: HttpRequest) -> HttpResponse:
    """The "Train a new version" form of /models/: a train run, or the form again with the
    refusal under the field it blames."""
    form = request.POST
    try:
        dataset = _dataset(form.get("dataset", ""))
        params = {}
        if form.get("steps"):
            if (steps := strict.whole_number(form["steps"])) is None:
                raise ValidationError({"steps": "a whole number is required"})
            params["steps"] = steps
        if form.get("lora") == "on":
            params["lora"] = True
        from_version = form.get("from_version") or None
        if from_version is not None and strict.whole_number(from_version) is None:
            raise ValidationError({"from_version": "a version number is required"})
        run, _ = services.train_start(
            dataset_version=dataset,
            method=form.get("method", ""),
            params=params,
            from_version=int(from_version) if from_version else None,
            created_by=request.user,
            idempotency_key=form.get("idempotency_key") or None,
            user=request.user,
        )
    except ValidationError as exc:
        if isinstance(exc, idempotency.IdempotencyConflict):
            form = form.copy()
            form["idempotency_key"] = ""  # the page gets a fresh key: sent again, it is a new run
        return generator_views.model_versions_page(
            request, train_form=form, train_errors=errors.validation_fields(exc), status=400
        )
    messages.success(request, f"Run #{run.pk} trains version {run.params['version']}.")
    return redirect("run_detail", run_id=run.pk)


def _dataset(pk: str) -> DatasetVersion:
    if (number := strict.whole_number(pk)) is None or (
        version := DatasetVersion.objects.filter(pk=number).first()
    ) is None:
        raise ValidationError({"dataset": "choose a dataset version"})
    return version
