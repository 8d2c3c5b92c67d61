"""Designing characters over the API: a run that generates character sheets, promoting a
completion that holds a valid sheet to a character, and Architext decision puzzles imported as
a prompt set. The list of characters is the catalogue's (catalogue.py)."""

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Router, Status

from labelling import models
from labelling.api.catalogue import Character, PromptSet, rubric_named
from labelling.api.common import ADMIN, MAX_ID, BodyIn, Error, admin_required
from labelling.api.runs import Run
from labelling.catalogue import architext
from labelling.characters import services as character_services
from labelling.characters.sheets import SHEET_MAX_TOKENS

# Two prefixes: /sheets (generate sheets, promote one) and /puzzles (import).
sheets = Router(tags=["characters"])
puzzles = Router(tags=["characters"])


class SheetsIn(BodyIn):
    concept: str = Field(..., min_length=1, max_length=2000, description="what kind of character to design")
    count: int = Field(4, ge=1, le=16, description="sheets to generate (one GRPO group)")
    max_tokens: int = Field(
        SHEET_MAX_TOKENS, ge=SHEET_MAX_TOKENS, le=8192, description="the least lets the longest guided sheet close"
    )
    rubric: str | None = Field(None, description="rubric slug to judge the sheets with (coherence)")


class PromoteIn(BodyIn):
    slug: str = Field(..., min_length=1, max_length=80)


class PuzzlesIn(BodyIn):
    name: str = Field("puzzles.jsonl", min_length=1, max_length=200)
    content: str = Field(..., min_length=1, description="Architext rows, one JSON object per line")
    prompt_set: str = Field(..., min_length=1, max_length=80, description="slug of the new prompt set")


@sheets.post("", response={201: Run, 200: Run, 400: Error, 409: Error, **ADMIN}, operation_id="sheet_generate")
def sheet_generate(request: HttpRequest, body: SheetsIn):
    """Queue a run generating character sheets under the sheet's JSON schema (Idempotency-Key as for
    runs: the same key and body return the same run, 200; the same key with another body is a 409)."""
    admin_required(request)
    run, created = character_services.sheet_run_start(
        concept=body.concept,
        count=body.count,
        max_tokens=body.max_tokens,
        rubric=rubric_named(body.rubric),
        created_by=request.user,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        user=request.user,
    )
    return Status(201 if created else 200, run)


@sheets.post(
    "/{generation_id}/promote",
    response={201: Character, 400: Error, 404: Error, **ADMIN},
    operation_id="sheet_promote",
)
def sheet_promote(request: HttpRequest, body: PromoteIn, generation_id: int = Path(..., ge=1, le=MAX_ID)):
    """Make a character of a completion holding a valid sheet (with its glTF figure)."""
    admin_required(request)
    generation = get_object_or_404(models.Generation, pk=generation_id)
    return Status(201, character_services.sheet_promote(generation=generation, slug=body.slug))


@puzzles.post("", response={201: PromptSet, 400: Error, **ADMIN}, operation_id="puzzle_import")
def puzzle_import(request: HttpRequest, body: PuzzlesIn):
    """Architext decision puzzles become a prompt set of decision prompts (all or nothing)."""
    admin_required(request)
    return Status(201, architext.puzzles_import(body.name, body.content, prompt_set=body.prompt_set))
