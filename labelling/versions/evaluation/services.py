"""Writes of evaluations: start one (two generate runs, one pinned to each version, the same
prompts, seeds, sampling and rubric), store its result once both have finished, and make a
version current when its evaluation allows it or the question is answered (the API's and the
Models page's one check)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from labelling.datasets import services as dataset_services
from labelling.models import Character, Evaluation, GeneratorVersion, PipelineRun, PromptSet, Rubric
from labelling.runs import executor, idempotency
from labelling.runs import services as run_services
from labelling.versions.evaluation import pairs, selectors
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.generators import services as generator_services
from shaping_core.weights import HASHED_FILES, weights_sha256

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
    user=None,
    human_pairs: int = 0,
    human_overlap: int = 1,
) -> Evaluation:
    """Queue both sides. The baseline defaults to the candidate's parent; the prompts, to those
    the candidate's training dataset version held out. The rubric and its judge are fixed for
    the evaluation (recorded with a hash of the rubric's spec). The same idempotency key
    returns the evaluation it started the first time (a retry, a double submit), even when both
    arrive at once: each side's run carries the key, and runs are unique by it. With `user` (the
    key came from that user) the key is theirs alone, and reusing it for another request is
    refused (`IdempotencyConflict`), as for runs. `evaluation.started` says whether this call
    started it. `human_pairs`
    blind A/B pairs (each chosen on by `human_overlap` reviewers) go to the review queue once both
    sides have run."""
    the_sampling = {**DEFAULT_SAMPLING, **(sampling or {}), "seed": seed}
    request_sha256 = None
    if idempotency_key:
        if len(idempotency_key) > MAX_KEY:
            raise idempotency.IdempotencyKeyInvalid(
                {
                    "idempotency_key": f"an evaluation's key is at most {MAX_KEY} characters (this one has {len(idempotency_key)})"
                }
            )
        if user is not None:
            request_sha256 = idempotency.fingerprint(
                {
                    "candidate": candidate,
                    "baseline": baseline,
                    "prompt_set": prompt_set and prompt_set.pk,
                    "rubric": rubric.pk,
                    "character": character and character.pk,
                    "k": completions_per_prompt,
                    "sampling": the_sampling,
                    "human": [human_pairs, human_overlap],
                }
            )
        existing = evaluation_for_key(idempotency_key, user=user, request_sha256=request_sha256)
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
    if not 0 <= human_pairs <= MAX_HUMAN_PAIRS:
        raise ValidationError({"human_pairs": f"must be between 0 and {MAX_HUMAN_PAIRS}"})
    if not 1 <= human_overlap <= 10:
        raise ValidationError({"human_overlap": "must be between 1 and 10"})
    character = character or _character(prompt_set)
    spec = rubric.as_spec()
    judge_prompt = executor.judge_prompt_sha256(spec)  # "" when only rules score: no judge is asked
    judge_weights = judge_weights_sha256() if judge_prompt else ""
    if judge_weights and judge_weights == cand.weights_sha256:
        raise ValidationError(
            {
                "candidate": f"the judge runs version {cand.number}'s own weights: it would score itself; judge with another model"
            }
        )
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
                    params={
                        "sampling": the_sampling,
                        "generator_version": version.number,
                        "evaluation_side": side,
                        **({EVALUATION_REQUEST: request_sha256} if request_sha256 else {}),
                    },
                    created_by=created_by,
                    enqueue=enqueue,
                    idempotency_key=f"{idempotency_key}/{side}" if idempotency_key else None,
                    user=user,
                )
            evaluation = Evaluation.objects.create(
                candidate=cand,
                baseline=base,
                prompt_set=prompt_set,
                rubric=rubric,
                completions_per_prompt=completions_per_prompt,
                sampling=the_sampling,
                candidate_run=runs["candidate"],
                baseline_run=runs["baseline"],
                human_pairs=human_pairs,
                human_overlap=human_overlap,
                judge={
                    "rubric": f"{rubric.slug}@v{rubric.version}",
                    "rubric_sha256": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
                    "judge_model": "judge",
                    "judge_weights_sha256": judge_weights,
                    "shares_weights_with": _judge_shares_weights(judge_weights, cand, base),
                    "judge_prompt_sha256": judge_prompt,
                },
                created_by=created_by,
            )
    except IntegrityError:
        # A concurrent request with the same key started it first: its runs and evaluation stand.
        existing = (
            evaluation_for_key(idempotency_key, user=user, request_sha256=request_sha256) if idempotency_key else None
        )
        if existing is None:
            raise
        return existing
    evaluation.started = True
    return evaluation


def _judge_shares_weights(judge_weights: str, cand, base) -> str:
    """Whose weights the judge runs, if a side's: a judge that is the baseline (the demo judges
    with the base model) may prefer the baseline's answers, so every evaluation records it and
    its result sets the verdict on rule criteria alone beside the whole rubric's."""
    if not judge_weights:
        return ""
    if judge_weights == base.weights_sha256:
        return f"baseline v{base.number}"
    seen, version = set(), cand.parent
    while version is not None and version.pk not in seen:
        if version.weights_sha256 == judge_weights:
            return f"an ancestor, v{version.number}"
        seen.add(version.pk)
        version = version.parent
    return ""


MAX_KEY = 100  # runs keep 120 characters of a key, and each side adds its name
MAX_HUMAN_PAIRS = 1000


def judge_weights_sha256() -> str:
    """The fingerprint of the judge's weights (`judge_model_dir`), hashed once per change of its files."""
    root = generator_selectors.judge_model_dir()
    stamp = tuple((root / name).stat().st_mtime_ns if (root / name).is_file() else 0 for name in HASHED_FILES)
    return _weights_sha256(str(root), stamp)


@functools.lru_cache(maxsize=4)
def _weights_sha256(root: str, stamp: tuple) -> str:
    return weights_sha256(Path(root))


EVALUATION_REQUEST = "evaluation_request_sha256"  # a side's params key: the evaluation request's fingerprint


def evaluation_for_key(idempotency_key: str, *, user=None, request_sha256: str | None = None) -> Evaluation | None:
    """The evaluation started under this key (by this user), `started` False; one started for
    another request is a conflict."""
    stored = idempotency.key_stored(f"{idempotency_key}/candidate", user)
    evaluation = (
        Evaluation.objects.filter(candidate_run__idempotency_key=stored).select_related("candidate_run").first()
    )
    if evaluation is None:
        return None
    if request_sha256 is not None and (evaluation.candidate_run.params or {}).get(EVALUATION_REQUEST) != request_sha256:
        raise idempotency.IdempotencyConflict(
            {
                "idempotency_key": f"this key was already used for another request (evaluation #{evaluation.pk}); "
                "send a new key for a new request, or the same request to get that evaluation"
            }
        )
    evaluation.started = False
    return evaluation


def _character(prompt_set: PromptSet) -> Character:
    """The character whose persona leads the prompts, when none is named: the one the latest
    run on this prompt set used."""
    run = PipelineRun.objects.filter(prompt_set=prompt_set, character__isnull=False).order_by("-created_at").first()
    if run is None:
        raise ValidationError(
            {"character": f"no run has used prompt set {prompt_set.slug} with a character yet: name the character"}
        )
    return run.character


def evaluation_run_finished(run_id: int) -> None:
    """A run finished: finish the evaluation it is a side of, if any (the worker calls this, so
    the comparison and the blind pairs are there without anyone opening the page)."""
    evaluation = Evaluation.objects.filter(Q(candidate_run_id=run_id) | Q(baseline_run_id=run_id)).first()
    if evaluation is not None:
        evaluation_finish(evaluation=evaluation)


def evaluation_finish(*, evaluation: Evaluation) -> Evaluation:
    """Compute and store the comparison if both runs have finished (else leave it pending), and
    send its blind A/B pairs to the review queue (once, however many callers race here)."""
    evaluation = Evaluation.objects.select_related(
        "candidate", "baseline", "prompt_set", "rubric", "candidate_run", "baseline_run"
    ).get(pk=evaluation.pk)  # the runs' status as the database holds it now
    if not selectors.evaluation_finished(evaluation):
        return evaluation
    if evaluation.result is None:
        result = selectors.evaluation_compare(evaluation)
        Evaluation.objects.filter(pk=evaluation.pk, result__isnull=True).update(result=result)
        evaluation.refresh_from_db()
    if evaluation.human_pairs and not evaluation.pairs.exists():
        pairs.pairs_create(evaluation)
    return evaluation


class ConfirmationNeeded(ValidationError):
    """Making a version current needs a confirmation: `reason` says why (selectors.needs_confirmation)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__({"confirm": f"{reason}; confirm to make it current anyway"})


def generator_version_promote(*, version: GeneratorVersion, confirmed: bool = False) -> GeneratorVersion:
    """Make a version current (the API's and the Models page's one way): refused with
    ConfirmationNeeded, changing nothing, while the version is not marked better than its
    parent on held-out prompts (selectors.needs_confirmation) unless `confirmed`; then as
    generators.services.generator_version_make_current (a version that is not ready is refused
    there, confirmed or not)."""
    with transaction.atomic():
        asked = version.status == GeneratorVersion.Status.READY and not version.is_current  # else nothing to confirm
        reason = selectors.needs_confirmation(version) if asked else None
        if reason and not confirmed:
            raise ConfirmationNeeded(reason)
        return generator_services.generator_version_make_current(version=version)
