"""Review writes: claim a group under a lease, submit a rating, skip, undo, rewrite.

Two reviewers on one group are resolved by leases and conditional writes, never by
last-write-wins; a submission carries a client-made id, so a retry stores nothing twice.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from labelling import clock
from labelling.models import Assignment, Generation, Group, Judgment
from labelling.records.queue_state import group_queue_refresh
from labelling.records.services import generation_record, judgments_save
from labelling.review import leases, selectors


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
        now = clock.now()
        return leases.seat_take(
            seats=Assignment.objects.filter(group=group),
            reviewer=reviewer,
            overlap_target=group.overlap_target,
            now=now,
            create=lambda: Assignment.objects.create(
                group=group,
                reviewer=reviewer,
                leased_until=leases.lease_end(now),
                shown_order=_shown_order(group, reviewer),
            ),
        )


def _lock_hold(*, assignment_id: int, reviewer) -> Assignment:
    """The reviewer's hold, locked after its group's row, in the order claims take them.

    With the group locked first, a submission racing its own expiring lease is decided before
    any claim counts that seat (so the group never passes its overlap target), and a claim
    and a submission on one group cannot deadlock."""
    group_id = Assignment.objects.values_list("group_id", flat=True).get(pk=assignment_id, reviewer=reviewer)
    Group.objects.select_for_update().values_list("pk", flat=True).get(pk=group_id)
    return Assignment.objects.select_for_update().select_related("group").get(pk=assignment_id, reviewer=reviewer)


def assignment_claim_next(*, reviewer, policy: str = selectors.DEFAULT_POLICY) -> Assignment | None:
    """The group the reviewer holds, else a newly claimed one from the queue, else None."""
    holds = selectors.assignments_active(reviewer=reviewer)  # one read: the live hold, or the lapsed ones
    current = selectors.hold_live(holds)
    if current is not None:
        return current
    with transaction.atomic():
        # One reviewer in two tabs holds one group, not two: the reviewer's row lock serialises
        # their claims, and the holds are read again under it (the other tab may have won).
        get_user_model().objects.select_for_update().values_list("pk", flat=True).get(pk=reviewer.pk)
        holds = selectors.assignments_active(reviewer=reviewer)
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


def _check_submission(submission: ReviewSubmission, shown: list[int], *, scored: bool) -> None:
    """`scored`: the rubric has criteria a reviewer scores (rule criteria are not theirs to score)."""
    known = set(shown)
    keys = set(submission.scores) | set(submission.ranks) | set(submission.critiques)
    unknown = sorted((keys | set(submission.flagged)) - known)
    if unknown:
        raise ValidationError({"generation": f"not a completion of this group: {unknown}"})
    missing = sorted(known - set(submission.scores))
    if missing and scored:
        raise ValidationError({"scores": f"score every completion; missing {missing}"})
    if submission.ranks:
        if set(submission.ranks) != known:
            raise ValidationError({"rank": "give every completion a rank, or none"})
        bad = {r for r in submission.ranks.values() if not 1 <= r <= len(known)}
        if bad:
            raise ValidationError({"rank": f"ranks run from 1 to {len(known)}"})
    if submission.preference is not None and submission.preference not in PREFERENCES:
        raise ValidationError({"preference": f"one of {', '.join(PREFERENCES)}"})
    longest = max((len(text) for text in submission.critiques.values()), default=0)
    if longest > settings.REVIEW_CRITIQUE_MAX_CHARS:
        raise ValidationError(
            {
                "critique": f"a critique is at most {settings.REVIEW_CRITIQUE_MAX_CHARS} characters "
                f"(REVIEW_CRITIQUE_MAX_CHARS); one has {longest}"
            }
        )


def review_submit(*, assignment_id: int, reviewer, submission: ReviewSubmission) -> bool:
    """Store a reviewer's rating of a group as human judgments, one per completion,
    mark the assignment submitted and count the review, all in one transaction. Reviewers
    score the criteria without a rule; the rule criteria are filled in from their rules
    (`judgments_save`), so each judgment covers the whole rubric.

    Returns False when this submission id was already stored (a retry or double
    submit): nothing is written twice.
    """
    with transaction.atomic():
        assignment = _lock_hold(assignment_id=assignment_id, reviewer=reviewer)
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
        now = clock.now()
        if assignment.status != Assignment.Status.ACTIVE:
            raise ReviewRefused(f"This group is already {assignment.get_status_display()}.")
        if assignment.leased_until <= now:
            raise ReviewRefused(
                "Your hold on this group expired; reload the queue to take it again "
                "if it is still free. Your scores are kept in this browser."
            )
        generations = {g.pk: g for g in selectors.group_originals(group)}
        shown = selectors.shown_order(assignment, generations.values())
        rubric = selectors.group_rubric(group)
        if rubric is None:
            raise ReviewRefused("There is no rubric to review against.")
        _check_submission(submission, shown, scored=any(not c.is_rule for c in rubric.criteria.all()))
        ranks, flagged = dict(submission.ranks), set(submission.flagged)
        if submission.preference is not None:
            ranks, both_bad = _pairwise_ranks(shown, submission.preference)
            flagged |= both_bad
        judgments_save(
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
                    # Rule criteria: judgments_save scores them by their rules, not the reviewer.
                    submission.scores.get(gid, {}),
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
        status=Assignment.Status.SKIPPED, completed_at=clock.now()
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
    Group.objects.select_for_update().values_list("pk", flat=True).get(pk=last.generation.group_id)  # claims' order
    assignment = Assignment.objects.select_for_update().get(group_id=last.generation.group_id, reviewer=reviewer)
    now = clock.now()
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
    assignment.leased_until = leases.lease_end(now)
    assignment.completed_at = None
    assignment.save(update_fields=["status", "leased_until", "completed_at"])
    return assignment


@transaction.atomic
def generation_rewrite(*, assignment_id: int, reviewer, generation_id: int, text: str) -> Generation:
    """A reviewer's rewrite of one completion: a new generation in the same slot
    whose parent is the original."""
    assignment = _lock_hold(assignment_id=assignment_id, reviewer=reviewer)
    if assignment.status != Assignment.Status.ACTIVE or assignment.leased_until <= clock.now():
        raise ReviewRefused("Rewrites need an active hold on the group; reload the queue.")
    original = selectors.group_originals(assignment.group).filter(pk=generation_id).first()
    if original is None:
        raise ValidationError({"generation": "not a completion of this group"})
    if not text.strip():
        raise ValidationError({"text": "a rewrite cannot be empty"})
    if len(text) > settings.REVIEW_REWRITE_MAX_CHARS:
        raise ValidationError(
            {
                "text": f"a rewrite is at most {settings.REVIEW_REWRITE_MAX_CHARS} characters "
                f"(REVIEW_REWRITE_MAX_CHARS); this one has {len(text)}"
            }
        )
    return generation_record(
        group=assignment.group,
        index=original.index,
        messages=original.messages,
        raw_text=text,
        producer=None,
        source=Generation.Source.HUMAN_REWRITE,
        parent=original,
        author=reviewer,
    )
