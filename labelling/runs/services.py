"""Run writes and what runs record: start, resume and cancel a run; the groups, completions
and judge judgments it makes (imports and reviewers' rewrites record through the same
functions, so snapshots, think-tag checks, revision numbers and score checks hold whoever
writes).

A run is executed by the model side (`inference.execution`), reached through `executor`.

What a model wrote enters the database here (`generation_record`, `judgment_record`,
`judgment_record_failure`): a NUL in it becomes U+FFFD (`errors.nul_replaced`), which
PostgreSQL stores as SQLite does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelling import errors
from labelling.catalogue.schemas import GroupIn
from labelling.catalogue.selectors import prompt_messages_for, rubric_latest
from labelling.generators import selectors as generator_selectors
from labelling.live import broadcasts
from labelling.models import (
    Character,
    CriterionScore,
    Generation,
    GeneratorVersion,
    Group,
    Judgment,
    ModelVersion,
    PipelineRun,
    Prompt,
    PromptSet,
    Rubric,
)
from labelling.review.queue import group_queue_refresh
from labelling.runs import executor, idempotency
from shaping_core import rules, scoring, thinktags


def model_version_get_or_create(
    *,
    backend: str,
    model_name: str = "",
    model_version: str = "",
    sampling: Mapping | None = None,
    generator: GeneratorVersion | None = None,
    endpoint: str = "",
) -> ModelVersion:
    """The row for one setup. With a generator version, its model name and number are the row's
    (and the version's id joins the key); with an endpoint (an OpenAI-compatible server named in
    the settings) its name joins the key; without either the key is what it always was."""
    sampling = dict(sampling or {})
    fields = [backend, model_name, model_version, sampling]
    if generator is not None:
        model_name, model_version = generator.model_name, str(generator.number)
        fields = [backend, model_name, model_version, sampling, {"generator": generator.pk}]
    if endpoint:
        fields = [*fields, {"endpoint": endpoint}]
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    row, _ = ModelVersion.objects.get_or_create(
        key=key,
        defaults={
            "backend": backend,
            "endpoint": endpoint,
            "model_name": model_name,
            "model_version": model_version,
            "sampling": sampling,
            "generator": generator,
        },
    )
    return row


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
    `</think>` inside one of its strings is text, not the end of a think block. A NUL in the
    text (or a measure) is stored as U+FFFD (`errors.nul_replaced`)."""
    raw_text, measures = errors.nul_replaced(raw_text), errors.nul_replaced(measures)
    if structured:
        parsed = thinktags.ThinkParse(answer=raw_text.strip(), thinking="")
    else:
        parsed = thinktags.parse(raw_text, opened_in_prompt=opened_in_prompt)
    with transaction.atomic():
        # The group's row lock serialises writers of its slots (a revise run and a reviewer's
        # rewrite of the same completion): the revision number is read, then written, under it.
        # SQLite's IMMEDIATE transactions serialise every writer already.
        Group.objects.select_for_update().values_list("pk", flat=True).get(pk=group.pk)
        revision = 0
        if parent is not None:
            revision = 1 + (
                Generation.objects.filter(group=group, index=parent.index)
                .order_by("-revision")
                .values_list("revision", flat=True)
                .first()
                or 0
            )
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
        else:
            transaction.on_commit(lambda: broadcasts.group_revised(group.pk, revision, source))
    return generation


def judgments_save(
    rubric: Rubric, pairs: list[tuple[Judgment, Mapping[str, int]]], *, rank_by_overall: bool = False
) -> None:
    """Check each judgment's scores against the rubric and set its overall score (and rank
    them by it if asked), then insert the judgments and all their scores in two statements
    (the caller holds the transaction).

    Rule criteria are scored here by their rules, whoever judged (the judge model and the
    reviewers are not asked about them): every stored judgment covers the whole rubric, and a
    rule criterion's score is always its rule's."""
    criteria = list(rubric.criteria.all())
    if any(c.is_rule for c in criteria):
        pairs = [
            (j, rules.with_rule_scores(criteria, s, j.generation.text, think_valid=j.generation.think_valid))
            for j, s in pairs
        ]
    for judgment, scores in pairs:
        try:
            judgment.overall = round(scoring.overall(criteria, scores), 6)
        except scoring.ScoresInvalid as exc:
            raise ValidationError({exc.field: exc.message}) from None
    if rank_by_overall:
        ranks = scoring.competition_ranks({i: judgment.overall for i, (judgment, _) in enumerate(pairs)})
        for i, (judgment, _) in enumerate(pairs):
            judgment.rank = ranks[i]
    Judgment.objects.bulk_create([judgment for judgment, _ in pairs])
    CriterionScore.objects.bulk_create(
        CriterionScore(judgment=judgment, criterion=c, score=scores[c.key])
        for judgment, scores in pairs
        for c in criteria
    )


@transaction.atomic
def judgment_rescore(*, judgment: Judgment) -> Judgment:
    """After a correction of a judgment's stored scores (the admin): check them against its
    rubric, recompute the overall score and the group's queue state, as a new judgment would."""
    judgment = Judgment.objects.select_for_update().select_related("generation").get(pk=judgment.pk)
    if judgment.status != Judgment.Status.OK:
        return judgment
    scores = dict(judgment.scores.values_list("criterion__key", "score"))
    try:
        judgment.overall = round(scoring.overall(judgment.rubric.criteria.all(), scores), 6)
    except scoring.ScoresInvalid as exc:
        raise ValidationError({exc.field: exc.message}) from None
    judgment.save(update_fields=["overall"])
    group_queue_refresh(judgment.generation.group_id)
    return judgment


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
    several judgments of one group passes refresh_queue=False and refreshes it once. A NUL in
    the judge's text is stored as U+FFFD (`errors.nul_replaced`)."""
    rationale, raw_output, extra = errors.nul_replaced((rationale, raw_output, extra))
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
    judgments_save(rubric, [(judgment, scores)])
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
    """A judge answer that would not parse is kept, raw text and all, never dropped (a NUL in
    it stored as U+FFFD: `errors.nul_replaced`)."""
    raw_output, error = errors.nul_replaced((raw_output, error))
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
    user=None,
    enqueue: bool = True,
) -> tuple[PipelineRun, bool]:
    """Create a queued run and enqueue it once the row is committed.

    A run that generates (generate, revise) is pinned to a generator version: the ready one
    `params["generator_version"]` numbers, else the current one, whose number is then written
    into its params (a resume generates with the same weights, whatever is current by then).

    The same idempotency key returns the run it created the first time (created=False). With
    `user` (the key came from that user: the API, a form) the key is that user's alone, and
    reusing it for a different request is refused (`idempotency.IdempotencyConflict`); a key
    over `idempotency.MAX_LENGTH` characters is refused (`IdempotencyKeyInvalid`).
    """
    params = dict(params or {})
    stored_key = request_sha256 = None
    if idempotency_key:
        stored_key = idempotency.key_stored(idempotency_key, user)
        if user is not None:
            request_sha256 = idempotency.fingerprint(
                {
                    "kind": kind,
                    "character": character and character.pk,
                    "prompt_set": prompt_set and prompt_set.pk,
                    "rubric": rubric and rubric.pk,
                    "source_run": source_run and source_run.pk,
                    "group_size": group_size,
                    "params": params,
                }
            )
            params[idempotency.FINGERPRINT] = request_sha256
        existing = idempotency.run_for_key(stored_key, request_sha256=request_sha256)
        if existing is not None:
            return existing, False
    _run_check(kind=kind, character=character, prompt_set=prompt_set, rubric=rubric, source_run=source_run)
    _endpoints_check(params)
    if kind in GENERATING and not params.get("generator_endpoint"):
        params["generator_version"] = generator_selectors.generator_version_checked(
            params.get("generator_version")
        ).number
    try:
        with transaction.atomic():
            run = PipelineRun.objects.create(
                kind=kind,
                params=params,
                character=character,
                prompt_set=prompt_set,
                rubric=rubric,
                source_run=source_run,
                group_size=group_size,
                created_by=created_by,
                idempotency_key=stored_key,
            )
    except IntegrityError:
        if not stored_key:
            raise
        # A concurrent request with the same key created it first: that run is the answer.
        existing = idempotency.run_for_key(stored_key, request_sha256=request_sha256)
        if existing is None:
            raise
        return existing, False
    if enqueue:
        transaction.on_commit(lambda: executor.enqueue(run.pk))
    transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    return run, True


# The kinds whose runs generate text with the generator (and so are pinned to a version of it).
GENERATING = {PipelineRun.Kind.GENERATE, PipelineRun.Kind.REVISE}


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


ENDPOINT_FIELDS = ("generator_endpoint", "judge_endpoint")


def _endpoints_check(params: Mapping) -> None:
    """A run names OpenAI-compatible endpoints by their names in the settings (never an address);
    an unknown name is refused naming the field and the names there are. A run that generates
    through an endpoint pins no generator version (those are Triton's)."""
    configured = settings.OPENAI_ENDPOINTS
    for field in ENDPOINT_FIELDS:
        name = params.get(field)
        if name is not None and name not in configured:
            names = ", ".join(sorted(configured)) or "none are configured"
            raise ValidationError({field: f"no endpoint {name!r} (configured: {names})"})
    if params.get("generator_endpoint") and params.get("generator_version") is not None:
        raise ValidationError(
            {"generator_version": "a run that generates through an endpoint serves no generator version of ours"}
        )


def run_resume(*, run: PipelineRun) -> PipelineRun:
    """Queue a failed, partial, cancelled-with-items-left or stale run again; it does only what
    is missing. A run still running with a fresh heartbeat is refused: it would run twice."""
    S = PipelineRun.Status
    with transaction.atomic():
        resumable = PipelineRun.objects.filter(PipelineRun.resumable(), pk=run.pk)
        # A stale running run stays running: the next claim takes it over (and raises its
        # execution number, so a worker that only stalled stops). Others go back to queued.
        updated = resumable.filter(status__in=[S.RUNNING, S.QUEUED]).count() or resumable.update(
            status=S.QUEUED, cancel_requested=False, finished_at=None
        )
        if not updated:
            run.refresh_from_db()
            raise ValidationError({"status": _not_resumable(run)})
        transaction.on_commit(lambda: executor.enqueue(run.pk))
        transaction.on_commit(lambda: broadcasts.run_changed(run.pk))
    run.refresh_from_db()
    return run


def _not_resumable(run: PipelineRun) -> str:
    if run.status == PipelineRun.Status.RUNNING:
        return f"run #{run.pk} is running (its worker is alive); cancel it first, or wait for it to finish"
    if run.status == PipelineRun.Status.QUEUED:
        return f"run #{run.pk} is queued; a worker will take it up"
    return f"run #{run.pk} is {run.status}; only failed, partial, cancelled or stalled runs resume"


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
