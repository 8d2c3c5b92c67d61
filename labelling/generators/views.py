"""The model versions page (admins): the generator's lineage, v1 -> v2 -> ..., with each
version's dataset, method, status and which one is current."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labelling.access.decorators import admin_required
from labelling.generators import selectors
from labelling.models import DatasetVersion, Evaluation, GeneratorVersion
from labelling.training import charts
from labelling.training import selectors as training_selectors

TRAINABLE = (DatasetVersion.Kind.GRPO_PROMPTS, DatasetVersion.Kind.DPO, DatasetVersion.Kind.SFT)


@require_GET
@admin_required
def model_versions(request: HttpRequest) -> HttpResponse:
    return model_versions_page(request)


def model_versions_page(request: HttpRequest, *, train_form=None, train_errors=None, status: int = 200) -> HttpResponse:
    versions = list(selectors.generator_versions())
    for v in versions:  # each trained version's curve, as a sparkline: reward if it has one, else loss
        lines = (
            charts.curve_lines(training_selectors.training_curve(v.train_run_id), 160, 36, 2) if v.train_run_id else []
        )
        v.curve = lines[0] if lines else None
    context = {
        "versions": versions,
        "ready": [v for v in versions if v.status == GeneratorVersion.Status.READY],
        "datasets": DatasetVersion.objects.filter(kind__in=TRAINABLE).order_by("dataset", "-number")[:200],
        "evaluations": Evaluation.objects.select_related("candidate", "baseline", "prompt_set")[:20],
        "train_form": train_form or {},
        "train_errors": train_errors or {},
    }
    return render(request, "generators/list.html", context, status=status)
