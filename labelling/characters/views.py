"""Character pages: a character's sheet and figure, a completion's figure, promoting a sheet."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labelling import errors
from labelling.access import roles
from labelling.access.decorators import reviewer_required
from labelling.characters import services
from labelling.characters import sheets as sheet_lib
from labelling.characters.appearance import build_glb
from labelling.models import Character, Generation


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
        character = services.sheet_promote(generation=generation, slug=request.POST.get("slug", "").strip())
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
