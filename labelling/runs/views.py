"""Pipeline runs from the browser: start one (a generate / judge / revise run, a character
design run, a puzzle import: the forms of /runs/new), watch it live, cancel or resume it.
Starting and steering runs is for admins."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labelling import errors
from labelling.access.decorators import admin_required
from labelling.catalogue import architext
from labelling.catalogue.importers import ImportFailed, import_size_check
from labelling.models import Character, PipelineRun, PromptSet, Rubric
from labelling.runs import idempotency, selectors, services
from labelling.versions.generators import selectors as generator_selectors
from shaping_core import strict

KINDS = [(k.value, k.label) for k in (PipelineRun.Kind.GENERATE, PipelineRun.Kind.JUDGE, PipelineRun.Kind.REVISE)]


@require_http_methods(["GET", "POST"])
@admin_required
def run_new(request: HttpRequest) -> HttpResponse:
    form = {**RUN_DEFAULTS, "prompt_set": request.GET.get("prompt_set", "")}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form.update(request.POST.dict())
        try:
            run = _start(form, request.user)
        except ValidationError as exc:
            errors = form_errors(exc)
            if isinstance(exc, idempotency.IdempotencyConflict):
                form["idempotency_key"] = ""  # the page gets a fresh key: sent again, it is a new run
        else:
            messages.success(request, f"Run #{run.pk} queued.")
            return redirect("run_detail", run_id=run.pk)
    return new_page(request, form=form, errors=errors)


@require_POST
@admin_required
def puzzles_new(request: HttpRequest) -> HttpResponse:
    """Import Architext decision puzzles as a prompt set (all or nothing), then start a run on it."""
    form = request.POST.dict()
    upload = request.FILES.get("puzzles")
    try:
        if upload is None:
            raise ValidationError({"puzzles": "choose an Architext JSONL file"})
        import_size_check(upload.name, upload.size)  # before reading it
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError({"puzzles": f"{upload.name}: not UTF-8 text"}) from None
        prompt_set = architext.puzzles_import(upload.name, text, prompt_set=form.get("puzzle_set", "").strip())
    except ValidationError as exc:
        return new_page(request, puzzle_form=form, puzzle_errors=form_errors(exc))
    except ImportFailed as exc:
        return new_page(request, puzzle_form=form, puzzle_errors={"puzzles": str(exc)})
    messages.success(request, f"{prompt_set.prompts.count()} decision prompts imported into {prompt_set.name}.")
    return redirect(f"{reverse('run_new')}?prompt_set={prompt_set.pk}")


RUN_DEFAULTS = {
    "kind": "generate",
    "group_size": "4",
    "review_overlap": "1",
    "max_tokens": "128",
    "threshold": "0.5",
    "max_rounds": "1",
}

# What other rooms add to the run pages, registered when Django starts (labelling.apps): the
# new-run page's character-design form (characters), a train run's chart (versions.training).
# The rooms that start runs import runs, so runs imports none of them.
NEW_PAGE_FORMS: dict[str, Callable[[], dict]] = {}
RUN_DETAIL: dict[str, Callable[[PipelineRun], dict]] = {}


def new_page(request: HttpRequest, *, form: dict | None = None, errors: dict | None = None, **forms) -> HttpResponse:
    """The start-a-run page with its three forms (run, character sheets, puzzle import); `forms`
    are a refused form's values and errors, shown again."""
    failed = bool(errors) or any(forms.get(k) for k in ("sheet_errors", "puzzle_errors"))
    context = {
        "form": form or RUN_DEFAULTS,
        "errors": errors or {},
        "puzzle_form": {},
        "puzzle_errors": {},
        **{key: value for extra in NEW_PAGE_FORMS.values() for key, value in extra().items()},
        **forms,
        "kinds": KINDS,
        "characters": Character.objects.order_by("name"),
        "prompt_sets": PromptSet.objects.order_by("name"),
        "rubrics": Rubric.objects.order_by("slug", "-version"),
        "source_runs": PipelineRun.objects.filter(kind=PipelineRun.Kind.GENERATE).order_by("-created_at")[:50],
        "generator_versions": generator_selectors.generator_versions_ready(),
        "endpoints": sorted(settings.OPENAI_ENDPOINTS),
    }
    return render(request, "runs/new.html", context, status=400 if failed else 200)


def form_errors(exc: ValidationError) -> dict[str, str]:
    return errors.validation_fields(exc) or {"__all__": "; ".join(exc.messages)}


def form_pick(form: dict, model, field: str):
    """The row a form's select names by primary key, None when none is chosen."""
    value = form.get(field) or ""
    if not value:
        return None
    if (pk := strict.whole_number(value)) is None or (row := model.objects.filter(pk=pk).first()) is None:
        raise ValidationError({field: f"no such {model._meta.verbose_name}"})
    return row


def form_numbers(form: dict, fields) -> dict:
    numbers = {}
    for field, cast, low, high in fields:
        try:
            text = form.get(field, "")
            if not text.isascii():  # int("١") is 1, and int("²") fails: digits are 0-9 here
                raise ValueError(text)
            numbers[field] = cast(text)
        except ValueError:
            raise ValidationError({field: "a number is required"}) from None
        if not low <= numbers[field] <= high:
            raise ValidationError({field: f"must be between {low} and {high}"})
    return numbers


def _start(form: dict, user) -> PipelineRun:
    numbers = form_numbers(
        form,
        (
            ("group_size", int, 1, 16),
            ("max_tokens", int, 1, 4096),
            ("threshold", float, 0.0, 1.0),
            ("max_rounds", int, 1, 5),
            ("review_overlap", int, 1, 10),
        ),
    )
    pinned = {}
    if form.get("generator_version"):  # empty: the current version
        if (number := strict.whole_number(form["generator_version"])) is None:
            raise ValidationError({"generator_version": "a version number is required"})
        pinned["generator_version"] = number
    for field in services.ENDPOINT_FIELDS:  # empty: the bundled backend
        if form.get(field):
            pinned[field] = form[field]
    run, _ = services.run_start(
        kind=form.get("kind", ""),
        character=form_pick(form, Character, "character"),
        prompt_set=form_pick(form, PromptSet, "prompt_set"),
        rubric=form_pick(form, Rubric, "rubric"),
        source_run=form_pick(form, PipelineRun, "source_run"),
        group_size=numbers["group_size"],
        params={
            "sampling": {"max_tokens": numbers["max_tokens"]},
            "revise": form.get("revise") == "on",
            "revise_threshold": numbers["threshold"],
            "max_rounds": numbers["max_rounds"],
            "review_overlap": numbers["review_overlap"],
            **pinned,
        },
        created_by=user,
        idempotency_key=form.get("idempotency_key") or None,
        user=user,
    )
    return run


@require_GET
@admin_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(
        PipelineRun.objects.select_related("character", "prompt_set", "rubric", "source_run"), pk=run_id
    )
    context = {"run": run, **selectors.run_groups(run)}
    if request.htmx:  # the live socket (re)opened: the groups as they are now
        return render(request, "runs/detail.html#live-groups", context)
    context.update(
        throughput=selectors.run_throughput(run),
        settings=selectors.run_settings(run),
        resumable=run.is_resumable,
        parts=selectors.run_parts(run),
    )
    if (extra := RUN_DETAIL.get(run.kind)) is not None:
        context.update(extra(run))
    return render(request, "runs/detail.html", context)


@require_POST
@admin_required
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun, pk=run_id)
    if run.is_finished:
        messages.info(request, f"Run #{run.pk} has already finished ({run.get_status_display()}): nothing to cancel.")
        return redirect("run_detail", run_id=run.pk)
    run = services.run_cancel(run=run)
    if run.is_finished:
        messages.info(request, f"Run #{run.pk} cancelled.")
    else:
        messages.info(request, f"Run #{run.pk}: cancel requested; it stops after its current item.")
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
