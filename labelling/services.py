"""Writes: every change to the domain goes through an `<entity>_<verb>(*, ...)` service here.

Services are atomic and keyword-only. Pipelines (inference) save through them too,
so the rules (snapshots, versioning, scale checks) hold whoever writes.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from labelling import thinktags
from labelling.models import (
    Character,
    Criterion,
    CriterionScore,
    Generation,
    Group,
    Judgment,
    ModelVersion,
    PipelineRun,
    Prompt,
    PromptSet,
    Rubric,
)
from labelling.schemas import CharacterIn, GroupIn, PromptIn, PromptSetIn, RubricIn

THUMBNAIL_SIZE = (256, 256)


# --- characters -------------------------------------------------------------------


@transaction.atomic
def character_create(*, data: CharacterIn) -> Character:
    return Character.objects.create(**data.model_dump())


@transaction.atomic
def character_set_portrait(*, character: Character, filename: str, content: bytes) -> Character:
    """Store a portrait and a square thumbnail made from it (Pillow)."""
    try:
        image = Image.open(io.BytesIO(content))
        image.load()
    except Exception as exc:
        raise ValidationError(f"portrait: not an image Pillow can read ({exc})") from exc
    thumb = image.convert("RGB")
    thumb.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    stem = character.slug
    character.portrait.save(f"{stem}-{filename}", ContentFile(content), save=False)
    character.portrait_thumbnail.save(
        f"{stem}-thumb.jpg", ContentFile(buffer.getvalue()), save=False
    )
    character.save(update_fields=["portrait", "portrait_thumbnail", "updated_at"])
    return character


# --- rubrics ----------------------------------------------------------------------


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
        raise ValidationError(
            {"slug": "a rubric's slug cannot change; create a new rubric instead"}
        )
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


def rubric_latest(slug: str) -> Rubric | None:
    return Rubric.objects.filter(slug=slug).order_by("-version").first()


# --- prompts ----------------------------------------------------------------------


@transaction.atomic
def prompt_set_create(*, data: PromptSetIn) -> PromptSet:
    prompt_set = PromptSet.objects.create(
        slug=data.slug, name=data.name, description=data.description
    )
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


# --- model versions and runs ------------------------------------------------------


def model_version_get_or_create(
    *, backend: str, model_name: str, model_version: str = "", sampling: Mapping | None = None
) -> ModelVersion:
    sampling = dict(sampling or {})
    key = hashlib.sha256(
        json.dumps([backend, model_name, model_version, sampling], sort_keys=True).encode()
    ).hexdigest()
    row, _ = ModelVersion.objects.get_or_create(
        key=key,
        defaults={
            "backend": backend,
            "model_name": model_name,
            "model_version": model_version,
            "sampling": sampling,
        },
    )
    return row


def prompt_messages_for(character: Character, prompt: Prompt) -> list[dict]:
    """The exact messages a generation is made from: persona first, then the prompt."""
    messages = [m for m in prompt.messages if m.get("role") != "system"]
    return [character.system_message(), *messages]


# --- imported groups --------------------------------------------------------------


@transaction.atomic
def group_import(*, data: GroupIn, run: PipelineRun) -> Group:
    """Completions made elsewhere become a GRPO group for review (and, with
    judge_scores, judged rows as if our judge had scored them)."""
    character = Character.objects.get(slug=data.character)
    prompt = Prompt.objects.get(prompt_set__slug=data.prompt_set, external_id=data.prompt)
    model_version = model_version_get_or_create(backend="external", model_name=data.model)
    group = Group.objects.create(
        run=run, prompt=prompt, character=character, size=len(data.completions)
    )
    messages = prompt_messages_for(character, prompt)
    rubric = rubric_latest(data.rubric) if data.rubric else None
    for index, raw in enumerate(data.completions):
        generation = generation_record(
            group=group,
            index=index,
            messages=messages,
            raw_text=raw,
            model_version=model_version,
            source=Generation.Source.EXTERNAL,
            run=run,
        )
        if data.judge_scores is not None:
            scored = data.judge_scores[index]
            judgment_record(
                generation=generation,
                rubric=rubric,
                source=Judgment.Source.JUDGE,
                scores=scored.scores,
                rationale=scored.rationale,
                model_version=model_version,
                run=run,
            )
    return group


def generation_record(
    *,
    group: Group,
    index: int,
    messages: list[dict],
    raw_text: str,
    model_version: ModelVersion | None,
    source: str = Generation.Source.MODEL,
    run: PipelineRun | None = None,
    parent: Generation | None = None,
    opened_in_prompt: bool = False,
    **measures,
) -> Generation:
    """Save one completion with its think block split out and checked."""
    parsed = thinktags.parse(raw_text, opened_in_prompt=opened_in_prompt)
    revision = 0
    if parent is not None:
        revision = 1 + (
            Generation.objects.filter(group=group, index=parent.index)
            .order_by("-revision")
            .values_list("revision", flat=True)
            .first()
            or 0
        )
    return Generation.objects.create(
        group=group,
        index=index,
        revision=revision,
        parent=parent,
        source=source,
        run=run,
        messages=messages,
        text=parsed.answer,
        raw_text=raw_text,
        thinking=parsed.thinking,
        think_valid=parsed.valid,
        think_issues=parsed.issues,
        model_version=model_version,
        **measures,
    )


# --- judgments --------------------------------------------------------------------


def weighted_overall(criteria: Iterable[Criterion], scores: Mapping[str, int]) -> float:
    """Weighted mean of the scores, each rescaled to 0..1 so criteria on
    different scales weigh what their weight says."""
    total = weight_sum = 0.0
    for c in criteria:
        span = c.scale_max - c.scale_min
        total += c.weight * (scores[c.key] - c.scale_min) / span
        weight_sum += c.weight
    return round(total / weight_sum, 6) if weight_sum else 0.0


@transaction.atomic
def judgment_record(
    *,
    generation: Generation,
    rubric: Rubric,
    source: str,
    scores: Mapping[str, int],
    rationale: str = "",
    raw_output: str = "",
    model_version: ModelVersion | None = None,
    reviewer=None,
    run: PipelineRun | None = None,
    **extra,
) -> Judgment:
    """Save scores for every criterion of the rubric (no more, no fewer)."""
    criteria = list(rubric.criteria.all())
    expected = {c.key for c in criteria}
    if set(scores) != expected:
        missing, unknown = sorted(expected - set(scores)), sorted(set(scores) - expected)
        raise ValidationError(
            {
                "scores": f"scores must cover exactly the rubric's criteria; missing {missing}, unknown {unknown}"
            }
        )
    for c in criteria:
        value = scores[c.key]
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not c.scale_min <= value <= c.scale_max
        ):
            raise ValidationError(
                {f"scores.{c.key}": f"{value!r} is outside {c.scale_min}..{c.scale_max}"}
            )
    judgment = Judgment.objects.create(
        generation=generation,
        rubric=rubric,
        source=source,
        model_version=model_version,
        reviewer=reviewer,
        run=run,
        overall=weighted_overall(criteria, scores),
        rationale=rationale,
        raw_output=raw_output,
        **extra,
    )
    CriterionScore.objects.bulk_create(
        CriterionScore(judgment=judgment, criterion=c, score=scores[c.key]) for c in criteria
    )
    return judgment


@transaction.atomic
def judgment_record_failure(
    *,
    generation: Generation,
    rubric: Rubric,
    model_version: ModelVersion,
    raw_output: str,
    error: str,
    run: PipelineRun | None = None,
) -> Judgment:
    """A judge answer that would not parse is kept, raw text and all, never dropped."""
    return Judgment.objects.create(
        generation=generation,
        rubric=rubric,
        source=Judgment.Source.JUDGE,
        status=Judgment.Status.FAILED,
        model_version=model_version,
        run=run,
        raw_output=raw_output,
        error=error,
    )
