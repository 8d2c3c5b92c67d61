"""Pipeline runs from the browser: start one, watch it live, cancel or resume it; and
whether the inference backend is ready. Starting and steering runs is for admins."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labelling import roles, services
from labelling.models import Character, PipelineRun, PromptSet, Rubric

KINDS = [(k.value, k.label) for k in (PipelineRun.Kind.GENERATE, PipelineRun.Kind.JUDGE, PipelineRun.Kind.REVISE)]


def admin_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not roles.is_admin(request.user):
            raise PermissionDenied("admins only")
        return view(request, *args, **kwargs)

    return wrapped


@require_http_methods(["GET", "POST"])
@admin_required
def run_new(request: HttpRequest) -> HttpResponse:
    form = {"kind": "generate", "group_size": "4", "max_tokens": "128", "threshold": "0.5", "max_rounds": "1"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form.update(request.POST.dict())
        try:
            run = _start(form, request.user)
        except ValidationError as exc:
            errors = {k: "; ".join(v) for k, v in exc.message_dict.items()}
        else:
            messages.success(request, f"Run #{run.pk} queued.")
            return redirect("run_detail", run_id=run.pk)
    context = {
        "form": form, "errors": errors, "kinds": KINDS,
        "characters": Character.objects.order_by("name"), "prompt_sets": PromptSet.objects.order_by("name"),
        "rubrics": Rubric.objects.order_by("slug", "-version"),
        "source_runs": PipelineRun.objects.filter(kind=PipelineRun.Kind.GENERATE).order_by("-created_at")[:50],
    }
    return render(request, "runs/new.html", context, status=400 if errors else 200)


def _start(form: dict, user) -> PipelineRun:
    def pick(model, field: str):
        value = form.get(field) or ""
        if not value:
            return None
        if not value.isdigit() or (row := model.objects.filter(pk=int(value)).first()) is None:
            raise ValidationError({field: f"no such {model._meta.verbose_name}"})
        return row

    numbers = {}
    for field, cast, low, high in (("group_size", int, 1, 16), ("max_tokens", int, 1, 4096),
                                   ("threshold", float, 0.0, 1.0), ("max_rounds", int, 1, 5)):
        try:
            numbers[field] = cast(form.get(field, ""))
        except ValueError:
            raise ValidationError({field: "a number is required"}) from None
        if not low <= numbers[field] <= high:
            raise ValidationError({field: f"must be between {low} and {high}"})
    run, _ = services.run_start(
        kind=form.get("kind", ""), character=pick(Character, "character"), prompt_set=pick(PromptSet, "prompt_set"),
        rubric=pick(Rubric, "rubric"), source_run=pick(PipelineRun, "source_run"), group_size=numbers["group_size"],
        params={"sampling": {"max_tokens": numbers["max_tokens"]}, "revise": form.get("revise") == "on",
                "revise_threshold": numbers["threshold"], "max_rounds": numbers["max_rounds"]},
        created_by=user, idempotency_key=form.get("idempotency_key") or None,
    )
    return run


@require_GET
@admin_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun.objects.select_related("character", "prompt_set", "rubric"), pk=run_id)
    groups = run.groups.select_related("prompt").prefetch_related("generations").order_by("id")[:50]
    return render(request, "runs/detail.html", {"run": run, "groups": groups})


@require_POST
@admin_required
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = services.run_cancel(run=get_object_or_404(PipelineRun, pk=run_id))
    messages.info(request, f"Run #{run.pk}: cancel requested.")
    return redirect("run_detail", run_id=run.pk)


@require_POST
@admin_required
def run_resume(request: HttpRequest, run_id: int) -> HttpResponse:
    try:
        run = services.run_resume(run=get_object_or_404(PipelineRun, pk=run_id))
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
        return redirect("run_detail", run_id=run_id)
    messages.success(request, f"Run #{run.pk} queued again: only what is missing will run.")
    return redirect("run_detail", run_id=run.pk)


@require_GET
def inference_health(request: HttpRequest) -> HttpResponse:
    """A small partial the dashboard polls: is the backend up, is each model ready."""
    from inference.backends import get_backend

    return render(request, "partials/inference_health.html", {"health": get_backend().health()})
