"""Views of the review UI: thin, an access check plus one selector or service call."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labelling import selectors


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        "counts": selectors.dashboard_counts(),
        "runs": selectors.recent_runs()[:10],
        "characters": selectors.characters_with_counts(),
    }
    return render(request, "dashboard.html", context)


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for process supervisors: the web process is up and reaches its database."""
    selectors.dashboard_counts()
    return JsonResponse({"ok": True})
