"""Catalogue writes: characters (and their portraits), rubrics (a rubric a judgment uses is frozen:
editing it makes the next version), prompt sets and prompts."""

from __future__ import annotations

import io
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from labelling.catalogue.schemas import CharacterIn, PromptIn, PromptSetIn, RubricIn
from labelling.models import Character, Criterion, Prompt, PromptSet, Rubric

THUMBNAIL_SIZE = (256, 256)


@transaction.atomic
def character_create(*, data: CharacterIn) -> Character:
    return Character.objects.create(**data.model_dump())


def portrait_size_check(size: int) -> None:
    """A portrait's file is at most settings.PORTRAIT_MAX_BYTES (checked before it is read)."""
    if size > settings.PORTRAIT_MAX_BYTES:
        raise ValidationError(
            f"the picture is {size} bytes; a portrait is at most {settings.PORTRAIT_MAX_BYTES} bytes "
            "(PORTRAIT_MAX_BYTES)"
        )


def portrait_open(content: bytes) -> Image.Image:
    """The picture a portrait upload holds, refused (ValidationError) when its file is too big,
    it has more than settings.PORTRAIT_MAX_PIXELS pixels (read from its header, before any
    decoding: a small file can decode to gigabytes), or Pillow cannot read it."""
    portrait_size_check(len(content))
    try:
        image = Image.open(io.BytesIO(content))
    except Image.DecompressionBombError:
        image = None
    except Exception as exc:
        raise ValidationError(f"not an image Pillow can read ({exc})") from exc
    if image is None or image.width * image.height > settings.PORTRAIT_MAX_PIXELS:
        size = f"{image.width}×{image.height} pixels" if image else "a picture of too many pixels"
        raise ValidationError(
            f"{size}; a portrait has at most {settings.PORTRAIT_MAX_PIXELS} pixels (PORTRAIT_MAX_PIXELS)"
        )
    try:
        image.load()
    except Exception as exc:
        raise ValidationError(f"not an image Pillow can read ({exc})") from exc
    return image


@transaction.atomic
def character_set_portrait(*, character: Character, filename: str, content: bytes) -> Character:
    """Store a portrait and a square thumbnail made from it (Pillow)."""
    try:
        image = portrait_open(content)
    except ValidationError as exc:
        raise ValidationError({"portrait": exc.messages}) from None
    thumb = image.convert("RGB")
    thumb.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    stem = character.slug
    character.portrait.save(f"{stem}-{filename}", ContentFile(content), save=False)
    character.portrait_thumbnail.save(f"{stem}-thumb.jpg", ContentFile(buffer.getvalue()), save=False)
    character.save(update_fields=["portrait", "portrait_thumbnail", "updated_at"])
    return character


def _rubric_content(data: RubricIn) -> dict:
    return data.model_dump(exclude={"slug"})


def rubric_spec_matches(rubric: Rubric, data: RubricIn) -> bool:
    current = RubricIn(
        slug=rubric.slug,
        name=rubric.name,
        description=rubric.description,
        criteria=[c.as_spec() for c in rubric.criteria.all()],
    )
    return _rubric_content(current) == _rubric_content(data)


@transaction.atomic
def rubric_create(*, data: RubricIn, parent: Rubric | None = None) -> Rubric:
    """A new rubric, or the next version of `parent`'s slug."""
    version = 1
    if parent is not None:
        latest = Rubric.objects.filter(slug=parent.slug).order_by("-version").first()
        version = latest.version + 1
    rubric = Rubric.objects.create(
        slug=data.slug, version=version, name=data.name, description=data.description, parent=parent
    )
    _criteria_write(rubric, data)
    return rubric


@transaction.atomic
def rubric_update(*, rubric: Rubric, data: RubricIn) -> Rubric:
    """Edit a rubric. A version that judgments already use is frozen, so the edit
    becomes a new version (parent = this one) and existing scores keep their meaning."""
    # Lock the row: a judgment written concurrently must not land on criteria being replaced.
    rubric = Rubric.objects.select_for_update().get(pk=rubric.pk)
    if data.slug != rubric.slug:
        raise ValidationError({"slug": "a rubric's slug cannot change; create a new rubric instead"})
    if rubric_spec_matches(rubric, data):
        return rubric
    if rubric.is_frozen():
        return rubric_create(data=data, parent=rubric)
    rubric.name, rubric.description = data.name, data.description
    rubric.save(update_fields=["name", "description"])
    rubric.criteria.all().delete()
    _criteria_write(rubric, data)
    return rubric


def _criteria_write(rubric: Rubric, data: RubricIn) -> None:
    Criterion.objects.bulk_create(
        Criterion(rubric=rubric, order=i, **c.model_dump()) for i, c in enumerate(data.criteria)
    )


@transaction.atomic
def prompt_set_create(*, data: PromptSetIn) -> PromptSet:
    prompt_set = PromptSet.objects.create(slug=data.slug, name=data.name, description=data.description)
    prompts_add(prompt_set=prompt_set, prompts=data.prompts)
    return prompt_set


@transaction.atomic
def prompts_add(*, prompt_set: PromptSet, prompts: Iterable[PromptIn]) -> list[Prompt]:
    """Append prompts; one without an id gets its position as id."""
    start = prompt_set.prompts.count()
    rows = []
    for offset, p in enumerate(prompts):
        order = start + offset
        rows.append(
            Prompt(
                prompt_set=prompt_set,
                external_id=p.id or str(order + 1),
                messages=[m.model_dump() for m in p.messages],
                metadata=p.metadata,
                order=order,
            )
        )
    return Prompt.objects.bulk_create(rows)


def prompts_copy(*, prompt_set: PromptSet, prompts: Iterable[Prompt], origin: str) -> None:
    """Copies of prompts from other sets into `prompt_set`, in the order given: each keeps its
    messages and metadata, is named `<its set>/<its id>`, and records the prompt it copies under
    `metadata[origin]` (a dataset's held-out prompts, a campaign round's)."""
    Prompt.objects.bulk_create(
        Prompt(
            prompt_set=prompt_set,
            external_id=f"{p.prompt_set.slug}/{p.external_id}"[:120],
            messages=p.messages,
            metadata={**p.metadata, origin: p.pk},
            order=i,
        )
        for i, p in enumerate(prompts)
    )
