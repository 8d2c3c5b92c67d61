"""What runs, imports and reviewers record: the model setup that made a text, a run's group for
a prompt, completions (with their think-tag checks, snapshots and revision numbers) and
judgments (checked scores, the overall reward, failures recorded as rows). Whoever writes, the
same checks hold, and each group's review-queue state is refreshed (`queue_state`).

What a model wrote enters the database here (`generation_record`, `judgment_record`,
`judgment_record_failure`): a NUL in it becomes U+FFFD (`errors.nul_replaced`), which
PostgreSQL stores as SQLite does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.db import transaction

from labelling import errors
from labelling.live import broadcasts
from labelling.models import (
    CriterionScore,
    Generation,
    GeneratorVersion,
    Group,
    Judgment,
    PipelineRun,
    Producer,
    Prompt,
    Rubric,
)
from labelling.records.queue_state import group_queue_refresh
from shaping_core import rules, scoring, thinktags


def producer_get_or_create(
    *,
    backend: str,
    model_name: str = "",
    model_version: str = "",
    sampling: Mapping | None = None,
    generator: GeneratorVersion | None = None,
    endpoint: str = "",
) -> Producer:
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
    row, _ = Producer.objects.get_or_create(
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
def generation_record(
    *,
    group: Group,
    index: int,
    messages: list[dict],
    raw_text: str,
    producer: Producer | None,
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
            producer=producer,
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
    producer: Producer | None = None,
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
        producer=producer,
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
    producer: Producer,
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
        producer=producer,
        run=run,
        raw_output=raw_output,
        error=error,
    )
    group_queue_refresh(generation.group_id)
    return judgment


@transaction.atomic
def group_for(*, run: PipelineRun, prompt: Prompt) -> Group:
    """The run's group for a prompt, made on first use (safe against a concurrent maker); it goes
    to as many reviewers as the run asks (`review_overlap`, default 1)."""
    overlap = (run.params or {}).get("review_overlap", 1)
    group, _ = Group.objects.get_or_create(
        run=run,
        prompt=prompt,
        defaults={"character": run.character, "size": run.group_size, "overlap_target": overlap},
    )
    return group
