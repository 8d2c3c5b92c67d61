"""Character pages: a character's sheet and figure, a completion's figure, promoting a sheet, and
the character-design form of the new-run page (a run generating sheets for a concept)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labelling import errors
from labelling.access import roles
from labelling.access.decorators import admin_required, reviewer_required
from labelling.characters import services
from labelling.characters import sheets as sheet_lib
from labelling.characters.appearance import build_glb
from labelling.models import Character, Generation, Rubric
from labelling.runs import idempotency
from labelling.runs import views as run_views


@require_GET
@reviewer_required
def sheet_appearance(request: HttpRequest, generation_id: int) -> HttpResponse:
    """The glTF figure of a completion that holds a valid sheet (built from its parameters)."""
    generation = get_object_or_404(Generation, pk=generation_id)
    sheet = sheet_lib.parse_sheet(generation.text)
    if sheet is None:
        return HttpResponse("this completion is not a valid character sheet", status=404, content_type="text/plain")
    return HttpResponse(build_glb(sheet.appearance, name=sheet.name), content_type="model/gltf-binary")


@require_POST
@reviewer_required
def sheet_promote(request: HttpRequest, generation_id: int) -> HttpResponse:
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only an admin can promote a sheet to a character.")
    generation = get_object_or_404(Generation, pk=generation_id)
    try:
        # Each sheet on the page has its own box (slug-<id>); a plain form posts `slug`.
        slug = request.POST.get(f"slug-{generation_id}", request.POST.get("slug", "")).strip()
        if not slug:
            raise ValidationError({"slug": "give the new character a slug"})
        character = services.sheet_promote(generation=generation, slug=slug)
    except ValidationError as exc:
        return errors.refusal(errors.validation_text(exc), 400)
    url = reverse("character_detail", args=[character.slug])
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@require_GET
@reviewer_required
def character_detail(request: HttpRequest, slug: str) -> HttpResponse:
    character = get_object_or_404(Character, slug=slug)
    sheet = sheet_lib.CharacterSheet.model_validate(character.sheet) if character.sheet else None
    return render(request, "characters/detail.html", {"character": character, "sheet": sheet})


SHEET_DEFAULTS = {"count": "4", "sheet_max_tokens": str(sheet_lib.SHEET_MAX_TOKENS)}


def sheet_form() -> dict:
    """The new-run page's character-design form, empty (registered in labelling.apps)."""
    return {"sheet_form": SHEET_DEFAULTS, "sheet_errors": {}, "sheet_min_tokens": sheet_lib.SHEET_MAX_TOKENS}


@require_POST
@admin_required
def sheet_run_new(request: HttpRequest) -> HttpResponse:
    """Design characters: a run generating character sheets for a concept."""
    form = {**SHEET_DEFAULTS, **request.POST.dict()}
    try:
        numbers = run_views.form_numbers(
            form, (("count", int, 1, 16), ("sheet_max_tokens", int, sheet_lib.SHEET_MAX_TOKENS, 8192))
        )
        rubric = run_views.form_pick(form, Rubric, "sheet_rubric")
        run, _ = services.sheet_run_start(
            concept=form.get("concept", ""),
            count=numbers["count"],
            max_tokens=numbers["sheet_max_tokens"],
            rubric=rubric,
            created_by=request.user,
            idempotency_key=form.get("idempotency_key") or None,
            user=request.user,
        )
    except ValidationError as exc:
        if isinstance(exc, idempotency.IdempotencyConflict):
            form["idempotency_key"] = ""  # the page gets a fresh key: sent again, it is a new run
        return run_views.new_page(request, sheet_form=form, sheet_errors=run_views.form_errors(exc))
    messages.success(request, f"Run #{run.pk} queued: {numbers['count']} character sheets.")
    return redirect("run_detail", run_id=run.pk)
