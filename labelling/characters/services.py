"""Character design writes: a run that drafts character sheets for a concept, and promoting a
valid sheet to a character with its glTF figure."""

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from pydantic import ValidationError as Invalid

from labelling import errors
from labelling.catalogue.schemas import CharacterIn, PromptIn
from labelling.catalogue.services import prompts_add
from labelling.characters.appearance import build_glb
from labelling.characters.sheets import (
    SHEET_INSTRUCTION,
    SHEET_MAX_TOKENS,
    CharacterSheet,
    sheet_guidance,
    sheet_problems,
)
from labelling.models import Character, Generation, PipelineRun, PromptSet, Rubric
from labelling.runs.services import run_start

SHEET_DESIGNER = "sheet-designer"


def sheet_run_start(
    *,
    concept: str,
    count: int = 4,
    max_tokens: int = SHEET_MAX_TOKENS,
    rubric: Rubric | None = None,
    created_by=None,
    idempotency_key: str | None = None,
    user=None,
    enqueue: bool = True,
) -> tuple[PipelineRun, bool]:
    """A generate run making `count` character sheets for a concept, decoded under the
    sheet's JSON schema so each one parses (on a backend that honours guidance). The
    idempotency key is scoped to `user` as `run_start` scopes it."""
    concept = concept.strip()
    if not concept:
        raise ValidationError({"concept": "describe the character to design"})
    if max_tokens < SHEET_MAX_TOKENS:
        raise ValidationError(
            {"max_tokens": f"a sheet may need {SHEET_MAX_TOKENS} tokens to close: ask for at least that many"}
        )
    with transaction.atomic():
        designer, _ = Character.objects.get_or_create(
            slug=SHEET_DESIGNER,
            defaults={
                "name": "Sheet designer",
                "persona": "You design characters for stories and games. You answer with a JSON character sheet only.",
            },
        )
        key = hashlib.sha256(concept.encode()).hexdigest()[:10]
        prompt_set, made = PromptSet.objects.get_or_create(
            slug=f"sheets-{key}", defaults={"name": f"Sheets: {concept[:80]}", "description": concept}
        )
        if made:
            prompts_add(
                prompt_set=prompt_set,
                prompts=[
                    PromptIn(
                        id="concept", messages=[{"role": "user", "content": SHEET_INSTRUCTION.format(concept=concept)}]
                    )
                ],
            )
        return run_start(
            kind=PipelineRun.Kind.GENERATE,
            character=designer,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=count,
            created_by=created_by,
            idempotency_key=idempotency_key,
            user=user,
            enqueue=enqueue,
            params={
                "output": "sheet",
                "concept": concept,
                "sampling": {
                    "max_tokens": max_tokens,
                    "guidance_type": "json_schema",
                    "guidance": json.dumps(sheet_guidance()),
                },
            },
        )


@transaction.atomic
def _plain(error: dict) -> str:
    """A validation message a person reads: the slug's rule in words, not its regex."""
    if error["type"] == "string_pattern_mismatch" and error["loc"][:1] == ("slug",):
        return "use lowercase letters and digits, words joined by - or _ (such as nova-2)"
    return error["msg"]


def sheet_promote(*, generation: Generation, slug: str) -> Character:
    """Make a Character of a completion holding a valid sheet, with its glTF appearance. The
    sheet is the model's text: a NUL its JSON spells (the "\\u0000" escape) becomes U+FFFD, as
    in every stored output (`errors.nul_replaced`)."""
    problems = sheet_problems(generation.text)
    if problems:
        raise ValidationError({"sheet": "not a valid character sheet: " + "; ".join(problems[:5])})
    if Character.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a character with slug {slug!r} already exists"})
    parsed = CharacterSheet.model_validate_json(generation.text)
    sheet = CharacterSheet.model_validate(errors.nul_replaced(parsed.model_dump(mode="json")))
    try:
        data = CharacterIn(
            name=sheet.name,
            slug=slug,
            persona=sheet.persona(),
            traits=list(sheet.attributes.values),
            backstory=sheet.backstory,
        )
    except Invalid as exc:
        raise ValidationError({str(e["loc"][0]): _plain(e) for e in exc.errors()}) from None
    character = Character.objects.create(**data.model_dump(), sheet=sheet.model_dump(mode="json"))
    character.appearance_model.save(f"{slug}.glb", ContentFile(build_glb(sheet.appearance, name=sheet.name)))
    return character
