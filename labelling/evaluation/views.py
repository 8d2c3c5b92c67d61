"""The evaluation page (admins): the candidate against the baseline, with intervals, length
effects and the worst regressions side by side."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from labelling.access.decorators import admin_required
from labelling.evaluation import selectors, services
from labelling.models import Evaluation


@require_GET
@admin_required
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = get_object_or_404(
        Evaluation.objects.select_related(
            "candidate", "baseline", "prompt_set", "rubric", "candidate_run", "baseline_run"
        ),
        pk=evaluation_id,
    )
    evaluation = services.evaluation_finish(evaluation=evaluation)
    return render(
        request,
        "evaluation/detail.html",
        {"evaluation": evaluation, "status": selectors.evaluation_status(evaluation), "r": evaluation.result},
    )
