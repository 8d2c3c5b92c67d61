"""Writes: every change to the domain goes through an `<entity>_<verb>(*, ...)` service here.

Services are atomic and keyword-only. Pipelines (inference) save through them too,
so the rules (snapshots, versioning, scale checks) hold whoever writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from PIL import Image

from labelling import broadcasts, selectors, thinktags
from labelling.models import (
    Assignment,
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


# --- errors -----------------------------------------------------------------------


def validation_fields(exc: ValidationError) -> dict[str, str]:
    """A refusal's messages by field ({} when it names no field)."""
    if not hasattr(exc, "error_dict"):
        return {}
    return {k: "; ".join(v) for k, v in exc.message_dict.items()}


def validation_text(exc: ValidationError) -> str:
    """A refusal as one line: "field: message; ...", or its messages when it names no field."""
    return "; ".join(f"{k}: {v}" for k, v in validation_fields(exc).items()) or "; ".join(exc.messages)


# --- characters -------------------------------------------------------------------


@transaction.atomic
def character_create(*, data: CharacterIn) -> Character:
    return Character.objects.create(**data.model_dump())


# --- character sheets ----------------------------------------------------------------

SHEET_DESIGNER = "sheet-designer"


def sheet_run_start(
    *,
    concept: str,
    count: int = 4,
    max_tokens: int = 2048,
    rubric: Rubric | None = None,
    created_by=None,
    idempotency_key: str | None = None,
    enqueue: bool = True,
) -> tuple[PipelineRun, bool]:
    """A generate run making `count` character sheets for a concept, decoded under the
    sheet's JSON schema so each one parses (on a backend that honours guidance)."""
    from labelling.sheets import SHEET_INSTRUCTION, sheet_schema

    concept = concept.strip()
    if not concept:
        raise ValidationError({"concept": "describe the character to design"})
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
            enqueue=enqueue,
            params={
                "output": "sheet",
                "concept": concept,
                "sampling": {
                    "max_tokens": max_tokens,
                    "guidance_type": "json_schema",
                    "guidance": json.dumps(sheet_schema()),
                },
            },
        )


@transaction.atomic
def sheet_promote(*, generation: Generation, slug: str) -> Character:
    """Make a Character of a completion holding a valid sheet, with its glTF appearance."""
    from pydantic import ValidationError as Invalid

    from labelling.appearance import build_glb
    from labelling.sheets import CharacterSheet, sheet_problems

    problems = sheet_problems(generation.text)
    if problems:
        raise ValidationError({"sheet": "not a valid character sheet: " + "; ".join(problems[:5])})
    if Character.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a character with slug {slug!r} already exists"})
    sheet = CharacterSheet.model_validate_json(generation.text)
    try:
        data = CharacterIn(
            name=sheet.name,
            slug=slug,
            persona=sheet.persona(),
            traits=list(sheet.attributes.values),
            backstory=sheet.backstory,
        )
    except Invalid as exc:
        raise ValidationError({str(e["loc"][0]): e["msg"] for e in exc.errors()}) from None
    character = Character.objects.create(**data.model_dump(), sheet=sheet.model_dump(mode="json"))
    character.appearance_model.save(f"{slug}.glb", ContentFile(build_glb(sheet.appearance, name=sheet.name)))
    return character


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
    character.portrait_thumbnail.save(f"{stem}-thumb.jpg", ContentFile(buffer.getvalue()), save=False)
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


def rubric_latest(slug: str) -> Rubric | None:
    return Rubric.objects.filter(slug=slug).order_by("-version").first()


# --- prompts ----------------------------------------------------------------------


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
    group = Group.objects.create(run=run, prompt=prompt, character=character, size=len(data.completions))
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
    structured: bool = False,
    **measures,
) -> Generation:
    """Save one completion with its think block split out and checked.

    A `structured` completion (decoded under guidance: a JSON sheet, say) is kept whole:
    `</think>` inside one of its strings is text, not the end of a think block."""
    if structured:
        parsed = thinktags.ThinkParse(answer=raw_text.strip(), thinking="")
    else:
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
    if parent is not None:
        transaction.on_commit(lambda: broadcasts.group_revised(group.pk, revision, source))
    generation = Generation.objects.create(
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
    if revision == 0:
        group_queue_refresh(group.pk)
    return generation


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


def scores_check(criteria: list[Criterion], scores: Mapping[str, int]) -> None:
    """Refuse scores that miss or add a criterion, or fall outside a criterion's scale."""
    expected = {c.key for c in criteria}
    if set(scores) != expected:
        missing, unknown = sorted(expected - set(scores)), sorted(set(scores) - expected)
        raise ValidationError(
            {"scores": f"scores must cover exactly the rubric's criteria; missing {missing}, unknown {unknown}"}
        )
    for c in criteria:
        value = scores[c.key]
        if not isinstance(value, int) or isinstance(value, bool) or not c.scale_min <= value <= c.scale_max:
            raise ValidationError({f"scores.{c.key}": f"{value!r} is outside {c.scale_min}..{c.scale_max}"})


def _judgments_save(
    rubric: Rubric, pairs: list[tuple[Judgment, Mapping[str, int]]], *, rank_by_overall: bool = False
) -> None:
    """Check each judgment's scores against the rubric (and rank them by their overall
    score if asked), then insert the judgments and all their scores in two statements
    (the caller holds the transaction)."""
    criteria = list(rubric.criteria.all())
    for judgment, scores in pairs:
        scores_check(criteria, scores)
        judgment.overall = weighted_overall(criteria, scores)
    if rank_by_overall:
        ranks = _rank_by_overall({i: judgment.overall for i, (judgment, _) in enumerate(pairs)})
        for i, (judgment, _) in enumerate(pairs):
            judgment.rank = ranks[i]
    Judgment.objects.bulk_create([judgment for judgment, _ in pairs])
    CriterionScore.objects.bulk_create(
        CriterionScore(judgment=judgment, criterion=c, score=scores[c.key])
        for judgment, scores in pairs
        for c in criteria
    )


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
    refresh_queue: bool = True,
    **extra,
) -> Judgment:
    """Save scores for every criterion of the rubric (no more, no fewer). A caller saving
    several judgments of one group passes refresh_queue=False and refreshes it once."""
    judgment = Judgment(
        generation=generation,
        rubric=rubric,
        source=source,
        model_version=model_version,
        reviewer=reviewer,
        run=run,
        rationale=rationale,
        raw_output=raw_output,
        **extra,
    )
    _judgments_save(rubric, [(judgment, scores)])
    if refresh_queue:
        group_queue_refresh(generation.group_id)
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
    judgment = Judgment.objects.create(
        generation=generation,
        rubric=rubric,
        source=Judgment.Source.JUDGE,
        status=Judgment.Status.FAILED,
        model_version=model_version,
        run=run,
        raw_output=raw_output,
        error=error,
    )
    group_queue_refresh(generation.group_id)
    return judgment


def group_queue_refresh(group_id: int) -> None:
    """Store whether the group is ready for review and its queue bucket (both follow from
    its completions and judgments; every writer of those calls this)."""
    groups_queue_refresh([group_id])


def groups_queue_refresh(group_ids: Iterable[int]) -> int:
    """The same for many groups (a data migration, a bulk fill); returns how many changed."""
    changed = 0
    ids = list(group_ids)
    for start in range(0, len(ids), 500):
        for pk, ready, bucket in selectors.group_queue_state(ids[start : start + 500]):
            changed += (
                Group.objects.filter(pk=pk)
                .exclude(ready=ready, queue_bucket=bucket)
                .update(ready=ready, queue_bucket=bucket)
            )
    return changed


# --- reviews ----------------------------------------------------------------------


class ReviewRefused(Exception):
    """A review action the current state refuses (an expired lease, nothing to undo).
    Nothing was written; `status` is what the UI answers with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ReviewSubmission:
    """One reviewer's rating of a whole group, keyed by generation id."""

    submission_id: uuid.UUID
    scores: Mapping[int, Mapping[str, int]]
    ranks: Mapping[int, int] = field(default_factory=dict)
    critiques: Mapping[int, str] = field(default_factory=dict)
    flagged: frozenset[int] = frozenset()
    # Pairwise mode (groups of two): "a", "b", "tie" or "both_bad"; A and B are the
    # first and second completion in the order the reviewer was shown.
    preference: str | None = None


PREFERENCES = ("a", "b", "tie", "both_bad")


def _lease_end(now):
    return now + timedelta(minutes=settings.REVIEW_LEASE_MINUTES)


def _shown_order(group: Group, reviewer) -> list[int]:
    """Completion order for this reviewer: shuffled against position bias, and the same
    for the same reviewer and group (it is stored with the seat, so a reload shows it)."""
    ids = list(selectors.group_originals(group).values_list("pk", flat=True))
    random.Random(f"{group.pk}:{reviewer.pk}").shuffle(ids)  # noqa: S311 - ordering, not secrecy
    return ids


def _assignment_claim(*, group_id: int, reviewer) -> Assignment | None:
    """Take a seat on one group, or None if it filled up meanwhile."""
    with transaction.atomic():
        # The group row lock serialises claimers of the same group on PostgreSQL;
        # SQLite's IMMEDIATE transactions already serialise every writer.
        group = (
            Group.objects.select_for_update(of=("self",)).select_related(*selectors.GROUP_VIEW_RELATED).get(pk=group_id)
        )
        now = timezone.now()
        if selectors.group_seats_taken(group, now=now, exclude_reviewer=reviewer) >= (group.overlap_target):
            return None
        existing = Assignment.objects.filter(group=group, reviewer=reviewer).first()
        if existing is not None:
            # Only a hold that ran out may be taken again, and only by a conditional
            # write, so two tabs renewing at once renew it once.
            renewed = Assignment.objects.filter(
                pk=existing.pk, status=Assignment.Status.ACTIVE, leased_until__lte=now
            ).update(leased_until=_lease_end(now))
            if not renewed:
                return None
            existing.refresh_from_db()
            return existing
        try:
            with transaction.atomic():
                return Assignment.objects.create(
                    group=group,
                    reviewer=reviewer,
                    leased_until=_lease_end(now),
                    shown_order=_shown_order(group, reviewer),
                )
        except IntegrityError:  # the same reviewer claimed it from another tab
            return None


def assignment_claim_next(*, reviewer, policy: str = selectors.DEFAULT_POLICY) -> Assignment | None:
    """The group the reviewer holds, else a newly claimed one from the queue, else None."""
    holds = selectors.assignments_active(reviewer=reviewer)  # one read: the live hold, or the lapsed ones
    current = selectors.hold_live(holds)
    if current is not None:
        return current
    candidates = [a.group_id for a in holds]  # lapsed holds are renewed first if their seat is free
    candidates += list(selectors.review_queue(reviewer=reviewer, policy=policy).values_list("pk", flat=True)[:50])
    for group_id in dict.fromkeys(candidates):
        assignment = _assignment_claim(group_id=group_id, reviewer=reviewer)
        if assignment is not None:
            return assignment
    return None


def _rank_by_overall(overall: Mapping[int, float]) -> dict[int, int]:
    """Competition ranking (1, 1, 3): equal scores share a rank."""
    return {gid: 1 + sum(1 for v in overall.values() if v > mine) for gid, mine in overall.items()}


def _pairwise_ranks(order: list[int], preference: str) -> tuple[dict[int, int], set[int]]:
    if len(order) != 2:
        raise ValidationError({"preference": "pairwise choice needs a group of exactly two"})
    a, b = order
    if preference == "a":
        return {a: 1, b: 2}, set()
    if preference == "b":
        return {a: 2, b: 1}, set()
    if preference == "tie":
        return {a: 1, b: 1}, set()
    # Both bad: neither earns first place, and both are flagged for a closer look.
    return {a: 2, b: 2}, {a, b}


def _check_submission(submission: ReviewSubmission, shown: list[int]) -> None:
    known = set(shown)
    keys = set(submission.scores) | set(submission.ranks) | set(submission.critiques)
    unknown = sorted((keys | set(submission.flagged)) - known)
    if unknown:
        raise ValidationError({"generation": f"not a completion of this group: {unknown}"})
    missing = sorted(known - set(submission.scores))
    if missing:
        raise ValidationError({"scores": f"score every completion; missing {missing}"})
    if submission.ranks:
        if set(submission.ranks) != known:
            raise ValidationError({"rank": "give every completion a rank, or none"})
        bad = {r for r in submission.ranks.values() if not 1 <= r <= len(known)}
        if bad:
            raise ValidationError({"rank": f"ranks run from 1 to {len(known)}"})
    if submission.preference is not None and submission.preference not in PREFERENCES:
        raise ValidationError({"preference": f"one of {', '.join(PREFERENCES)}"})


def review_submit(*, assignment_id: int, reviewer, submission: ReviewSubmission) -> bool:
    """Store a reviewer's rating of a group as human judgments, one per completion,
    mark the assignment submitted and count the review, all in one transaction.

    Returns False when this submission id was already stored (a retry or double
    submit): nothing is written twice.
    """
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update().select_related("group").get(pk=assignment_id, reviewer=reviewer)
        )
        group = assignment.group
        earlier = (
            Judgment.objects.filter(submission_id=submission.submission_id)
            .values_list("reviewer_id", "generation__group_id")
            .first()
        )
        if earlier == (reviewer.pk, group.pk):  # a retry or double submit of this review
            return False
        if earlier is not None:
            raise ValidationError({"submission_id": "already used for another review"})
        now = timezone.now()
        if assignment.status != Assignment.Status.ACTIVE:
            raise ReviewRefused(f"This group is already {assignment.get_status_display()}.")
        if assignment.leased_until <= now:
            raise ReviewRefused(
                "Your hold on this group expired; reload the queue to take it again "
                "if it is still free. Your scores are kept in this browser."
            )
        generations = {g.pk: g for g in selectors.group_originals(group)}
        shown = selectors.shown_order(assignment, generations.values())
        _check_submission(submission, shown)
        rubric = selectors.group_rubric(group)
        if rubric is None:
            raise ReviewRefused("There is no rubric to review against.")
        ranks, flagged = dict(submission.ranks), set(submission.flagged)
        if submission.preference is not None:
            ranks, both_bad = _pairwise_ranks(shown, submission.preference)
            flagged |= both_bad
        _judgments_save(
            rubric,
            [
                (
                    Judgment(
                        generation=generations[gid],
                        rubric=rubric,
                        source=Judgment.Source.HUMAN,
                        reviewer=reviewer,
                        rationale=submission.critiques.get(gid, "").strip(),
                        rank=ranks.get(gid),
                        flagged=gid in flagged,
                        submission_id=submission.submission_id,
                    ),
                    submission.scores[gid],
                )
                for gid in shown
            ],
            rank_by_overall=not ranks,
        )  # no ranking given: rank by the scores themselves
        done = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.ACTIVE).update(
            status=Assignment.Status.SUBMITTED, completed_at=now
        )
        if done != 1:  # cannot happen under the row lock; refuse rather than double count
            raise ReviewRefused("This group changed while you submitted; reload.")
        Group.objects.filter(pk=group.pk).update(review_count=F("review_count") + 1)
        group_queue_refresh(group.pk)
    return True


def review_skip(*, assignment_id: int, reviewer) -> None:
    """Give a group back unrated; it is not offered to this reviewer again."""
    skipped = Assignment.objects.filter(pk=assignment_id, reviewer=reviewer, status=Assignment.Status.ACTIVE).update(
        status=Assignment.Status.SKIPPED, completed_at=timezone.now()
    )
    if not skipped:
        raise ReviewRefused("This group is not yours to skip any more.")


@transaction.atomic
def review_undo(*, reviewer) -> Assignment:
    """Take back the reviewer's last submission: its judgments go, the review count
    drops, and the group is theirs again under a fresh lease. A group they were
    handed since then goes back to the queue."""
    last = selectors.reviewer_last_submission(reviewer=reviewer)
    if last is None:
        raise ReviewRefused("Nothing to undo.")
    assignment = Assignment.objects.select_for_update().get(group_id=last.generation.group_id, reviewer=reviewer)
    now = timezone.now()
    if assignment.status != Assignment.Status.SUBMITTED:
        raise ReviewRefused("Nothing to undo.")
    window = timedelta(minutes=settings.REVIEW_UNDO_MINUTES)
    if assignment.completed_at is None or assignment.completed_at < now - window:
        raise ReviewRefused(f"Only a submission from the last {settings.REVIEW_UNDO_MINUTES} minutes can be undone.")
    Judgment.objects.filter(reviewer=reviewer, submission_id=last.submission_id).delete()
    Group.objects.filter(pk=assignment.group_id, review_count__gt=0).update(review_count=F("review_count") - 1)
    group_queue_refresh(assignment.group_id)
    # Nothing was recorded on the newer hold, so releasing it loses nothing and
    # lets the queue offer it again (to this reviewer too).
    Assignment.objects.filter(reviewer=reviewer, status=Assignment.Status.ACTIVE).exclude(pk=assignment.pk).delete()
    assignment.status = Assignment.Status.ACTIVE
    assignment.leased_until = _lease_end(now)
    assignment.completed_at = None
    assignment.save(update_fields=["status", "leased_until", "completed_at"])
    return assignment


@transaction.atomic
def generation_rewrite(*, assignment_id: int, reviewer, generation_id: int, text: str) -> Generation:
    """A reviewer's rewrite of one completion: a new generation in the same slot
    whose parent is the original."""
    assignment = Assignment.objects.select_for_update().get(pk=assignment_id, reviewer=reviewer)
    if assignment.status != Assignment.Status.ACTIVE or assignment.leased_until <= timezone.now():
        raise ReviewRefused("Rewrites need an active hold on the group; reload the queue.")
    original = selectors.group_originals(assignment.group).filter(pk=generation_id).first()
    if original is None:
        raise ValidationError({"generation": "not a completion of this group"})
    if not text.strip():
        raise ValidationError({"text": "a rewrite cannot be empty"})
    # Lock the group: the next revision number is read, then written.
    Group.objects.select_for_update().get(pk=assignment.group_id)
    return generation_record(
        group=assignment.group,
        index=original.index,
        messages=original.messages,
        raw_text=text,
        model_version=None,
        source=Generation.Source.HUMAN_REWRITE,
        parent=original,
        author=reviewer,
    )


# --- runs -------------------------------------------------------------------------
# A run is executed by a huey task (inference.tasks.execute_run). These services keep
# its row honest: claimed by one worker at a time, progress counted as items finish,
# a final status that says what happened, live events sent after each commit.

RUN_STALE_AFTER_S = 60
RUN_ERRORS_KEPT = 500


@transaction.atomic
def run_start(
    *,
    kind: str,
    params: Mapping | None = None,
    character: Character | None = None,
    prompt_set: PromptSet | None = None,
    rubric: Rubric | None = None,
    source_run: PipelineRun | None = None,
    group_size: int = 4,
    created_by=None,
    idempotency_key: str | None = None,
    enqueue: bool = True,
) -> tuple[PipelineRun, bool]:
    """Create a queued run and enqueue it once the row is committed.

    The same idempotency key returns the run it created the first time (created=False).
    """
    if idempotency_key:
        existing = PipelineRun.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    _run_check(kind=kind, character=character, prompt_set=prompt_set, rubric=rubric, source_run=source_run)
    try:
        with transaction.atomic():
            run = PipelineRun.objects.create(
                kind=kind,
                params=dict(params or {}),
                character=character,
                prompt_set=prompt_set,
                rubric=rubric,
                source_run=source_run,
                group_size=group_size,
                created_by=created_by,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key created it first: that run is the answer.
        return PipelineRun.objects.get(idempotency_key=idempotency_key), False
    if enqueue:
        transaction.on_commit(lambda: _enqueue(run.pk))
    transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    return run, True


def _run_check(*, kind, character, prompt_set, rubric, source_run) -> None:
    needs = {
        PipelineRun.Kind.GENERATE: {"character": character, "prompt_set": prompt_set},
        PipelineRun.Kind.JUDGE: {"rubric": rubric, "source_run": source_run},
        PipelineRun.Kind.REVISE: {"rubric": rubric, "source_run": source_run},
    }.get(kind)
    if needs is None:
        raise ValidationError({"kind": f"{kind!r} is not a pipeline kind (generate, judge, revise)"})
    missing = [name for name, value in needs.items() if value is None]
    if missing:
        raise ValidationError({name: f"a {kind} run needs a {name.replace('_', ' ')}" for name in missing})


def _enqueue(run_id: int) -> None:
    from inference.tasks import execute_run  # the queue lives with the pipelines

    execute_run(run_id)


def run_resume(*, run: PipelineRun) -> PipelineRun:
    """Queue a finished-with-gaps (failed, partial) or stuck run again; it does only what is missing."""
    updated = PipelineRun.objects.filter(
        pk=run.pk,
        status__in=[
            PipelineRun.Status.FAILED,
            PipelineRun.Status.PARTIAL,
            PipelineRun.Status.RUNNING,
            PipelineRun.Status.QUEUED,
        ],
    ).update(status=PipelineRun.Status.QUEUED, cancel_requested=False, finished_at=None)
    if not updated:
        raise ValidationError({"status": f"run #{run.pk} is {run.status}; only failed, partial or stuck runs resume"})
    transaction.on_commit(lambda: _enqueue(run.pk))
    run.refresh_from_db()
    return run


def run_claim(*, run_id: int, stale_after_s: int = RUN_STALE_AFTER_S) -> PipelineRun | None:
    """Take a run for this worker: a conditional UPDATE, so of two workers (or a
    retried huey message) exactly one proceeds. A running run whose worker stopped
    beating is taken over."""
    now = timezone.now()
    stale = now - timedelta(seconds=stale_after_s)
    claimable = Q(status=PipelineRun.Status.QUEUED) | Q(status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale)
    claimed = PipelineRun.objects.filter(claimable, pk=run_id, cancel_requested=False).update(
        status=PipelineRun.Status.RUNNING, heartbeat_at=now, started_at=Coalesce("started_at", now)
    )
    if not claimed:
        return None
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    return PipelineRun.objects.get(pk=run_id)


def runs_stale(*, stale_after_s: int = RUN_STALE_AFTER_S) -> list[int]:
    stale = timezone.now() - timedelta(seconds=stale_after_s)
    return list(
        PipelineRun.objects.filter(status=PipelineRun.Status.RUNNING, heartbeat_at__lt=stale).values_list(
            "pk", flat=True
        )
    )


def run_heartbeat(*, run_id: int) -> bool:
    """Mark the run alive; returns whether cancellation was requested."""
    PipelineRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
    return PipelineRun.objects.filter(pk=run_id, cancel_requested=True).exists()


@transaction.atomic
def run_set_total(*, run_id: int, total: int, already_done: int) -> None:
    PipelineRun.objects.filter(pk=run_id).update(total_items=total, done_items=already_done, failed_items=0)
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


@transaction.atomic
def run_item_finished(*, run_id: int, ok: bool, error: Mapping | None = None) -> None:
    """Count one finished item; a failure is recorded with what it was for."""
    if ok:
        PipelineRun.objects.filter(pk=run_id).update(done_items=F("done_items") + 1)
    else:
        run = PipelineRun.objects.select_for_update().get(pk=run_id)
        run.failed_items += 1
        if error is not None and len(run.errors) < RUN_ERRORS_KEPT:
            run.errors = [*run.errors, {**error, "at": timezone.now().isoformat()}]
        run.save(update_fields=["failed_items", "errors"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


@transaction.atomic
def run_finish(*, run_id: int, cancelled: bool = False) -> PipelineRun:
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    if cancelled or run.cancel_requested:
        run.status = PipelineRun.Status.CANCELLED
    elif run.failed_items == 0:
        run.status = PipelineRun.Status.SUCCEEDED
    elif run.done_items == 0:
        run.status = PipelineRun.Status.FAILED
    else:
        run.status = PipelineRun.Status.PARTIAL
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))
    return run


@transaction.atomic
def run_fail(*, run_id: int, error: Mapping) -> None:
    """The run could not even start its items (e.g. its rubric lost its criteria)."""
    run = PipelineRun.objects.select_for_update().get(pk=run_id)
    run.status = PipelineRun.Status.FAILED
    run.finished_at = timezone.now()
    run.errors = [*run.errors, {**error, "at": timezone.now().isoformat()}][-RUN_ERRORS_KEPT:]
    run.save(update_fields=["status", "finished_at", "errors"])
    transaction.on_commit(lambda: broadcasts.run_changed(run_id))


@transaction.atomic
def run_cancel(*, run: PipelineRun) -> PipelineRun:
    """Ask a run to stop. A queued run stops at once; a running one at its next item."""
    PipelineRun.objects.filter(pk=run.pk, status=PipelineRun.Status.QUEUED).update(
        status=PipelineRun.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    )
    PipelineRun.objects.filter(pk=run.pk).exclude(status__in=PipelineRun.FINISHED).update(cancel_requested=True)
    transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    run.refresh_from_db()
    return run


def group_for(*, run: PipelineRun, prompt: Prompt) -> Group:
    """The run's group for a prompt, made on first use (safe against a concurrent maker)."""
    group, _ = Group.objects.get_or_create(
        run=run, prompt=prompt, defaults={"character": run.character, "size": run.group_size}
    )
    return group
