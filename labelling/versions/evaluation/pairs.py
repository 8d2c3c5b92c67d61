"""Blind A/B: the pairs an evaluation sends to reviewers, a reviewer's seat on one under a lease,
their choice (stored once, whatever the retries), and the human figures read from the choices.

A pair is one completion of each version for the same prompt and seed slot. Each reviewer sees
the two answers in an order of their own (recorded with the seat), labelled A and B, and never
which version wrote which until they have chosen. Seats and leases work as they do for groups
(`labelling.review.leases`): a pair is open while its choices plus live holds are fewer than its
overlap target, a lapsed hold goes back to the queue, and two tabs of one reviewer hold one pair.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef

from labelling import clock
from labelling.models import OPEN_PAIR, ABPair, Evaluation, Generation, Judgment, PairChoice
from labelling.review import leases
from labelling.review.services import ReviewRefused
from shaping_core.stats import HumanChoice, human_compare

CHOICES = tuple(PairChoice.Choice.values)


def _slot_order(evaluation: Evaluation, prompt_id: int) -> str:
    return hashlib.sha256(f"{evaluation.pk}:{prompt_id}".encode()).hexdigest()


def _slots(run_id: int) -> dict[tuple[int, int], int]:
    """(prompt id, slot) -> the run's original completion there."""
    rows = Generation.objects.filter(group__run_id=run_id, revision=0).values_list("group__prompt_id", "index", "pk")
    return {(prompt, index): pk for prompt, index, pk in rows}


def pairs_create(evaluation: Evaluation) -> int:
    """Send the evaluation's blind pairs to the queue (once: a second call, or two at once, adds
    none). Slot 0 of every prompt comes before slot 1 of any, the prompts in an order fixed by the
    evaluation, so a few pairs already cover many prompts."""
    if not evaluation.human_pairs:
        return 0
    candidate, baseline = _slots(evaluation.candidate_run_id), _slots(evaluation.baseline_run_id)
    both = sorted(set(candidate) & set(baseline), key=lambda k: (k[1], _slot_order(evaluation, k[0])))
    rows = [
        ABPair(
            evaluation=evaluation,
            prompt_id=prompt,
            candidate_id=candidate[(prompt, slot)],
            baseline_id=baseline[(prompt, slot)],
            overlap_target=evaluation.human_overlap,
        )
        for prompt, slot in both[: evaluation.human_pairs]
    ]
    ABPair.objects.bulk_create(rows, ignore_conflicts=True)  # unique per candidate completion
    return len(rows)


# --- the queue ---------------------------------------------------------------------------


def pair_queue(*, reviewer, now=None):
    """Pairs this reviewer may be offered, oldest first: open, and never seen by them (except a
    hold of theirs that lapsed)."""
    now = now or clock.now()
    seen = PairChoice.objects.filter(pair=OuterRef("pk"), reviewer=reviewer).exclude(
        status=PairChoice.Status.ACTIVE, leased_until__lte=now
    )
    return ABPair.objects.filter(OPEN_PAIR).filter(~Exists(seen)).order_by("created_at", "id")


def pairs_open_count(*, reviewer) -> int:
    return pair_queue(reviewer=reviewer).count()


def _claim(*, pair_id: int, reviewer) -> PairChoice | None:
    with transaction.atomic():
        pair = ABPair.objects.select_for_update().get(pk=pair_id)  # serialises claimers of one pair
        now = clock.now()
        # The sides, per reviewer and pair: a coin that is the same on every reload.
        coin = random.Random(f"ab:{pair.pk}:{reviewer.pk}").random()  # noqa: S311 - ordering, not secrecy
        return leases.seat_take(
            seats=PairChoice.objects.filter(pair=pair),
            reviewer=reviewer,
            overlap_target=pair.overlap_target,
            now=now,
            create=lambda: PairChoice.objects.create(
                pair=pair, reviewer=reviewer, leased_until=leases.lease_end(now), candidate_left=coin < 0.5
            ),
        )


HOLD_RELATED = (
    "pair__prompt",
    "pair__candidate",
    "pair__baseline",
    "pair__evaluation__candidate",
    "pair__evaluation__baseline",
)


def _live_hold(reviewer, now) -> PairChoice | None:
    return (
        PairChoice.objects.filter(reviewer=reviewer, status=PairChoice.Status.ACTIVE, leased_until__gt=now)
        .select_related(*HOLD_RELATED)
        .first()
    )


def pair_claim_next(*, reviewer) -> PairChoice | None:
    """The pair the reviewer holds, else a newly claimed one, else None."""
    current = _live_hold(reviewer, clock.now())
    if current is not None:
        return current
    with transaction.atomic():
        # Two tabs of one reviewer hold one pair: their claims queue on the reviewer's row.
        get_user_model().objects.select_for_update().values_list("pk", flat=True).get(pk=reviewer.pk)
        now = clock.now()
        current = _live_hold(reviewer, now)
        if current is not None:
            return current
        lapsed = list(
            PairChoice.objects.filter(
                reviewer=reviewer, status=PairChoice.Status.ACTIVE, leased_until__lte=now
            ).values_list("pair_id", flat=True)
        )
        fresh = list(pair_queue(reviewer=reviewer, now=now).values_list("pk", flat=True)[:50])
        for pair_id in dict.fromkeys(lapsed + fresh):
            claimed = _claim(pair_id=pair_id, reviewer=reviewer)
            if claimed is not None:
                return claimed
    return None


def pair_hold(*, reviewer, choice_id: int) -> PairChoice:
    """A reviewer's own seat (PairChoice.DoesNotExist for anyone else's)."""
    return PairChoice.objects.select_related(*HOLD_RELATED).get(pk=choice_id, reviewer=reviewer)


def pair_choose(*, choice_id: int, reviewer, choice: str, submission_id: uuid.UUID) -> bool:
    """Store the reviewer's choice on the pair they hold. False when this submission was already
    stored (a retry or a double submit: nothing is written twice)."""
    if choice not in CHOICES:
        raise ValidationError({"choice": f"one of {', '.join(CHOICES)}"})
    with transaction.atomic():
        pair_id = PairChoice.objects.values_list("pair_id", flat=True).get(pk=choice_id, reviewer=reviewer)
        ABPair.objects.select_for_update().values_list("pk", flat=True).get(pk=pair_id)  # in the claims' order
        held = PairChoice.objects.select_for_update().get(pk=choice_id, reviewer=reviewer)
        if held.submission_id == submission_id:
            return False
        if PairChoice.objects.filter(submission_id=submission_id).exists():
            raise ValidationError({"submission_id": "already used for another choice"})
        if held.status != PairChoice.Status.ACTIVE:
            raise ReviewRefused(f"You have already {held.get_status_display().lower()} this pair.")
        now = clock.now()
        if held.leased_until <= now:
            raise ReviewRefused(
                "Your hold on this pair expired; reload the queue to take it again if it is still free."
            )
        PairChoice.objects.filter(pk=held.pk).update(
            status=PairChoice.Status.SUBMITTED, choice=choice, submission_id=submission_id, completed_at=now
        )
        ABPair.objects.filter(pk=pair_id).update(choice_count=F("choice_count") + 1)
    return True


def pair_skip(*, choice_id: int, reviewer) -> None:
    """Give a pair back unchosen; it is not offered to this reviewer again."""
    skipped = PairChoice.objects.filter(pk=choice_id, reviewer=reviewer, status=PairChoice.Status.ACTIVE).update(
        status=PairChoice.Status.SKIPPED, completed_at=clock.now()
    )
    if not skipped:
        raise ReviewRefused("This pair is not yours to skip any more.")


@dataclass(frozen=True)
class Shown:
    """A held pair as its reviewer sees it: the prompt and the two answers, left then right."""

    hold: PairChoice
    messages: list
    left: Generation
    right: Generation


def pair_shown(hold: PairChoice) -> Shown:
    pair = hold.pair
    left, right = (pair.candidate, pair.baseline) if hold.candidate_left else (pair.baseline, pair.candidate)
    messages = [m for m in (pair.candidate.messages or pair.prompt.messages) if m.get("role") != "system"]
    return Shown(hold=hold, messages=messages, left=left, right=right)


# --- the figures -------------------------------------------------------------------------


def _judge_outcomes(evaluation: Evaluation, pairs: list[ABPair]) -> dict[int, float]:
    """pair id -> the judge's outcome for the candidate on the same two completions."""
    ids = {g for p in pairs for g in (p.candidate_id, p.baseline_id)}
    overall: dict[int, float] = {}
    for generation_id, value in Judgment.objects.filter(
        generation_id__in=ids, rubric_id=evaluation.rubric_id, source=Judgment.Source.JUDGE, status=Judgment.Status.OK
    ).values_list("generation_id", "overall"):
        overall.setdefault(generation_id, value)
    outcomes = {}
    for p in pairs:
        c, b = overall.get(p.candidate_id), overall.get(p.baseline_id)
        if c is not None and b is not None:
            outcomes[p.pk] = 0.5 if abs(c - b) <= 1e-9 else (1.0 if c > b else 0.0)
    return outcomes


def human_figures(evaluation: Evaluation) -> dict | None:
    """The blind A/B figures of an evaluation (None when it sent no pairs): how many pairs and
    choices, and once there are choices, the human win rate, agreement with the judge and side
    bias (stats.human_compare)."""
    if not evaluation.human_pairs:
        return None
    pairs = list(evaluation.pairs.all())
    submitted = list(
        PairChoice.objects.filter(pair__evaluation=evaluation, status=PairChoice.Status.SUBMITTED)
        .select_related("reviewer")
        .order_by("pk")
    )
    judge = _judge_outcomes(evaluation, pairs)
    prompt_of = {p.pk: str(p.prompt_id) for p in pairs}
    choices = [
        HumanChoice(
            prompt=prompt_of[c.pair_id],
            reviewer=c.reviewer.get_username(),
            outcome=c.candidate_outcome,
            candidate_left=c.candidate_left,
            both_bad=c.choice == PairChoice.Choice.BOTH_BAD,
            judge=judge.get(c.pair_id),
        )
        for c in submitted
    ]
    figures = {
        "pairs": len(pairs),
        "pairs_wanted": evaluation.human_pairs,
        "pairs_done": sum(1 for p in pairs if p.choice_count >= p.overlap_target),
        "overlap": evaluation.human_overlap,
    }
    if choices:
        figures.update(human_compare(choices))
    return figures
