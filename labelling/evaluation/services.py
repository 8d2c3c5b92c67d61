"""Writes of evaluations: start one (two generate runs, one pinned to each version, the same
prompts, seeds, sampling and rubric), and store its result once both have finished."""

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labelling.datasets import services as dataset_services
from labelling.evaluation import selectors
from labelling.generators import selectors as generator_selectors
from labelling.models import Character, Evaluation, PipelineRun, PromptSet, Rubric
from labelling.runs import services as run_services

DEFAULT_SEED = 1234
DEFAULT_SAMPLING = {"max_tokens": 64, "temperature": 0.7, "top_p": 0.8}


def evaluation_start(
    *,
    candidate: int,
    rubric: Rubric,
    prompt_set: PromptSet | None = None,
    baseline: int | None = None,
    character: Character | None = None,
    completions_per_prompt: int = 4,
    seed: int = DEFAULT_SEED,
    sampling: dict | None = None,
    created_by=None,
    enqueue: bool = True,
    idempotency_key: str | None = None,
) -> Evaluation:
    """Queue both sides. The baseline defaults to the candidate's parent; the prompts, to those
    the candidate's training dataset version held out. The rubric and its judge are fixed for
    the evaluation (recorded with a hash of the rubric's spec). The same idempotency key
    returns the evaluation it started the first time (a retry, a double submit), even when both
    arrive at once: each side's run carries the key, and runs are unique by it."""
    if idempotency_key:
        if len(idempotency_key) > MAX_KEY:
            raise ValidationError({"idempotency_key": f"at most {MAX_KEY} characters"})
        existing = evaluation_for_key(idempotency_key)
        if existing is not None:
            return existing
    try:
        cand = generator_selectors.generator_version_for(candidate)
    except generator_selectors.GeneratorUnavailable as exc:
        raise ValidationError({"candidate": str(exc)}) from None
    if baseline is None:
        if cand.parent is None:
            raise ValidationError({"baseline": f"version {cand.number} has no parent: name the baseline"})
        baseline = cand.parent.number
    try:
        base = generator_selectors.generator_version_for(baseline)
    except generator_selectors.GeneratorUnavailable as exc:
        raise ValidationError({"baseline": str(exc)}) from None
    if base.pk == cand.pk:
        raise ValidationError({"baseline": "the baseline must be another version than the candidate"})
    if prompt_set is None:
        if cand.dataset_version is None:
            raise ValidationError({"prompt_set": f"version {cand.number} was not trained here: name the prompt set"})
        prompt_set = dataset_services.dataset_held_out_prompt_set(version=cand.dataset_version)
    if not rubric.criteria.exists():
        raise ValidationError({"rubric": f"rubric {rubric.slug} v{rubric.version} has no criteria to score"})
    if not prompt_set.prompts.exists():
        raise ValidationError({"prompt_set": f"prompt set {prompt_set.slug} has no prompts"})
    if not 1 <= completions_per_prompt <= 16:
        raise ValidationError({"completions_per_prompt": "must be between 1 and 16"})
    character = character or _character(prompt_set)
    spec = rubric.as_spec()
    the_sampling = {**DEFAULT_SAMPLING, **(sampling or {}), "seed": seed}
    try:
        with transaction.atomic():
            runs = {}
            for side, version in (("candidate", cand), ("baseline", base)):
                runs[side], _ = run_services.run_start(
                    kind=PipelineRun.Kind.GENERATE,
                    character=character,
                    prompt_set=prompt_set,
                    rubric=rubric,
                    group_size=completions_per_prompt,
                    params={"sampling": the_sampling, "generator_version": version.number, "evaluation_side": side},
                    created_by=created_by,
                    enqueue=enqueue,
                    idempotency_key=f"{idempotency_key}/{side}" if idempotency_key else None,
                )
            return Evaluation.objects.create(
                candidate=cand,
                baseline=base,
                prompt_set=prompt_set,
                rubric=rubric,
                completions_per_prompt=completions_per_prompt,
                sampling=the_sampling,
                candidate_run=runs["candidate"],
                baseline_run=runs["baseline"],
                judge={
                    "rubric": f"{rubric.slug}@v{rubric.version}",
                    "rubric_sha256": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
                    "judge_model": "judge",
                },
                created_by=created_by,
            )
    except IntegrityError:
        # A concurrent request with the same key started it first: its runs and evaluation stand.
        existing = evaluation_for_key(idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing


MAX_KEY = 100  # runs keep 120 characters of a key, and each side adds its name


def evaluation_for_key(idempotency_key: str) -> Evaluation | None:
    return Evaluation.objects.filter(candidate_run__idempotency_key=f"{idempotency_key}/candidate").first()


def _character(prompt_set: PromptSet) -> Character:
    """The character whose persona leads the prompts, when none is named: the one the latest
    run on this prompt set used."""
    run = PipelineRun.objects.filter(prompt_set=prompt_set, character__isnull=False).order_by("-created_at").first()
    if run is None:
        raise ValidationError(
            {"character": f"no run has used prompt set {prompt_set.slug} with a character yet: name the character"}
        )
    return run.character


def evaluation_finish(*, evaluation: Evaluation) -> Evaluation:
    """Compute and store the comparison if both runs have finished (else leave it pending)."""
    evaluation = Evaluation.objects.select_related(
        "candidate", "baseline", "prompt_set", "rubric", "candidate_run", "baseline_run"
    ).get(pk=evaluation.pk)  # the runs' status as the database holds it now
    if evaluation.result is not None or not selectors.evaluation_finished(evaluation):
        return evaluation
    result = selectors.evaluation_compare(evaluation)
    Evaluation.objects.filter(pk=evaluation.pk, result__isnull=True).update(result=result)
    evaluation.refresh_from_db()
    return evaluation
