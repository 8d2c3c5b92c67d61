"""Pages that belong to no one domain: the dashboard (and its inference health fragment),
the liveness probe, and character pictures under /media/."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousFileOperation
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils._os import safe_join
from django.views.decorators.http import require_GET
from huey.contrib.djhuey import HUEY

from labelling import errors, health
from labelling.access import roles
from labelling.access.decorators import reviewer_required
from labelling.catalogue import selectors as catalogue_selectors
from labelling.review import selectors as review_selectors
from labelling.runs import executor
from labelling.runs import selectors as run_selectors

log = logging.getLogger(__name__)


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Runs, counts and characters for users with a role; a signed-in user in no role is told
    to ask an admin for one (and sees nothing else, like the live feed refuses them)."""
    if roles.user_role(request.user) is None:
        return render(request, "dashboard.html", {"no_role": True})
    context = {
        "counts": run_selectors.dashboard_counts(),
        "runs": run_selectors.recent_runs()[:10],
        "characters": catalogue_selectors.characters_with_counts(),
        "is_admin": roles.is_admin(request.user),
        "queue_count": review_selectors.review_queue(reviewer=request.user).count(),
    }
    return render(request, "dashboard.html", context)


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for process supervisors: the web process is up and reaches its database
    (a constant-time query: a probe must not get slower as the data grows)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


@require_GET
@login_not_required
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness, for a load balancer or an orchestrator: the database (a write commits), the
    task queue, a live consumer on each queue (labelling.health) and each model. 503 when any
    is down. Says what is down, never where it lives (no addresses)."""
    checks: dict[str, object] = {}
    try:  # a write that commits: a database that only reads (a read-only file, a replica) is down
        health.heartbeat_record("web")
        checks["database"] = True
    except Exception:
        log.warning("readyz: the database refused a write", exc_info=True)
        checks["database"] = False
    try:
        HUEY.pending_count()
        checks["queue"] = True
    except Exception:
        checks["queue"] = False
    try:
        backend = executor.health()
        checks["models"] = dict(backend.models)
        models_ok = backend.ready
    except Exception:
        checks["models"], models_ok = {}, False
    try:
        checks["consumers"] = health.consumers_alive()
    except Exception:
        checks["consumers"] = {}
    consumers_ok = bool(checks["consumers"]) and all(checks["consumers"].values())
    ok = checks["database"] is True and checks["queue"] is True and consumers_ok and models_ok
    return JsonResponse({"ok": ok, **checks}, status=200 if ok else 503)


# What /media/ serves to signed-in reviewers and admins: pictures and figures of characters.
# Dataset files live under media too but go out only through the admin and the API, checked.
PUBLIC_MEDIA = ("portraits/", "appearance/")


@require_GET
@reviewer_required
def media(request: HttpRequest, path: str) -> FileResponse:
    root = Path(settings.MEDIA_ROOT).resolve()
    try:
        full = Path(safe_join(root, path)).resolve()
    except SuspiciousFileOperation:
        raise Http404("no such file") from None
    # Checked on the resolved path: "appearance/../datasets/..." is a dataset file.
    if not full.is_relative_to(root) or not str(full.relative_to(root)).startswith(PUBLIC_MEDIA) or not full.is_file():
        raise Http404("no such file")
    content_type = "model/gltf-binary" if full.suffix == ".glb" else None
    return FileResponse(full.open("rb"), content_type=content_type)


@require_GET
@reviewer_required
def inference_health(request: HttpRequest) -> HttpResponse:
    """A small partial the dashboard polls: is the backend up, is each model ready. Where the
    backend lives (its address, its model folders) is for admins: a reviewer sees whether it is
    up, with any address taken out of the reason."""
    health = executor.health()
    if not roles.is_admin(request.user):
        health = {
            "backend": health.backend,
            "ready": health.ready,
            "models": health.models,
            "detail": errors.without_addresses(health.detail),
            "engines": health.engines,
        }
    return render(request, "partials/inference_health.html", {"health": health})
