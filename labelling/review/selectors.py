"""Reads: QuerySets and small aggregates shared by views, the API and the admin."""

from collections import Counter
from collections.abc import Iterable

from django.core.cache import cache
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from labelling import clock
from labelling.models import (
    OPEN_FOR_REVIEW,
    Assignment,
    CriterionScore,
    Generation,
    Group,
    Judgment,
    PipelineRun,
    Rubric,
)
from labelling.records.queue_state import QUEUE_BUCKETS

# --- review queue ------------------------------------------------------------------

# Queue policies a reviewer can switch between (?policy=). "signal" serves first the
# groups where human review changes the training data most.
POLICY_SIGNAL = "signal"
POLICY_FIFO = "fifo"
QUEUE_POLICIES = {
    POLICY_SIGNAL: "Most informative first",
    POLICY_FIFO: "Oldest first",
}
DEFAULT_POLICY = POLICY_SIGNAL


def _expired_hold(now) -> Q:
    return Q(status=Assignment.Status.ACTIVE, leased_until__lte=now)


def review_queue(*, reviewer, policy: str = DEFAULT_POLICY, now=None) -> QuerySet[Group]:
    """Groups this reviewer may be offered next, in the policy's order.

    A group is open while its submitted reviews plus unexpired holds are fewer than
    its overlap target. A reviewer is never offered a group twice, except one whose
    hold on it ran out while nobody else took the seat. A group still being generated
    is not ready: a review must cover all G. The order walks an index on the stored
    queue state; only the rows it passes are checked for holds.
    """
    if policy not in QUEUE_POLICIES:
        raise ValueError(f"unknown queue policy {policy!r}")
    now = now or clock.now()
    seen_before = Assignment.objects.filter(group=OuterRef("pk"), reviewer=reviewer).exclude(_expired_hold(now))
    holds = (
        Assignment.objects.filter(group=OuterRef("pk"), status=Assignment.Status.ACTIVE, leased_until__gt=now)
        .order_by()
        .values("group")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    groups = (
        Group.objects.filter(OPEN_FOR_REVIEW)  # the partial indexes' own condition: they order the walk
        .alias(seats_taken=F("review_count") + Coalesce(Subquery(holds), 0))
        .filter(seats_taken__lt=F("overlap_target"))
        .exclude(Exists(seen_before))
        .annotate(bucket=F("queue_bucket"))
    )
    if policy == POLICY_FIFO:
        return groups.order_by("created_at", "id")
    return groups.order_by("queue_bucket", "created_at", "id")


QUEUE_TOTALS_KEY = "review-queue-totals"
QUEUE_TOTALS_TTL_S = 5


def queue_totals_forget() -> None:
    """Drop the shared totals: the next summary counts afresh."""
    cache.delete(QUEUE_TOTALS_KEY)


def review_queue_summary(*, reviewer, policy: str = DEFAULT_POLICY) -> dict:
    """How many groups wait in each bucket, for the queue header: the ready groups short
    of their overlap, less those this reviewer has already taken (two index-sized counts,
    not the queue itself)."""
    waiting = Group.objects.filter(OPEN_FOR_REVIEW)
    # The totals take a scan of the waiting groups: shared by every reviewer for a few seconds.
    totals = cache.get_or_set(
        QUEUE_TOTALS_KEY,
        lambda: dict(waiting.values_list("queue_bucket").annotate(n=Count("pk")).order_by()),
        QUEUE_TOTALS_TTL_S,
    )
    counts = Counter(totals)
    counts.subtract(
        dict(
            waiting.filter(assignments__reviewer=reviewer)
            .values_list("queue_bucket")
            .annotate(n=Count("pk"))
            .order_by()
        )
    )
    return {
        "total": sum(max(0, n) for n in counts.values()),
        "buckets": [
            {"key": key, "label": label, "count": max(0, counts.get(key, 0))} for key, label in QUEUE_BUCKETS.items()
        ],
    }


# What the group view shows beside the completions, read with the group in one query.
GROUP_VIEW_RELATED = ("run", "character", "prompt__prompt_set")


def group_view_loaded(group: Group) -> bool:
    return Group.prompt.is_cached(group) and Group.run.is_cached(group) and Group.character.is_cached(group)


def assignments_active(*, reviewer) -> list[Assignment]:
    """The reviewer's active holds, live or lapsed, oldest first, with their groups as the
    group view reads them."""
    return list(
        Assignment.objects.filter(reviewer=reviewer, status=Assignment.Status.ACTIVE)
        .select_related(*(f"group__{f}" for f in GROUP_VIEW_RELATED))
        .order_by("created_at", "id")
    )


def hold_live(holds: Iterable[Assignment], now=None) -> Assignment | None:
    """The oldest of `holds` whose lease has not run out."""
    now = now or clock.now()
    return next((a for a in holds if a.leased_until > now), None)


def assignment_current(*, reviewer, now=None) -> Assignment | None:
    """The group the reviewer holds now (reloading the queue returns it)."""
    return hold_live(assignments_active(reviewer=reviewer), now)


def assignment_for_reviewer(*, reviewer, assignment_id: int) -> Assignment:
    """An assignment the reviewer owns, with what the group view needs; 404 otherwise."""
    return get_object_or_404(
        Assignment.objects.select_related("group", "group__prompt", "group__character", "group__prompt__prompt_set"),
        pk=assignment_id,
        reviewer=reviewer,
    )


def group_rubric(group: Group) -> Rubric | None:
    """The rubric a group is reviewed against: the latest version of the rubric its judge
    judgments used, else its run's rubric, else the one the character was last judged
    with, else the newest rubric there is."""
    judged = Judgment.objects.filter(source=Judgment.Source.JUDGE).order_by("-created_at", "-id")
    judged_with = judged.filter(generation__group=group).values("rubric__slug")[:1]
    rubrics = Rubric.objects.prefetch_related("criteria")
    # A judged group (nearly every one) is answered by the first, small query.
    latest = rubrics.filter(slug=Subquery(judged_with)).order_by("-version").first()
    if latest is not None:
        return latest
    run_rubric = PipelineRun.objects.filter(pk=group.run_id).values("rubric__slug")[:1]
    character_rubric = judged.filter(generation__group__character_id=group.character_id).values("rubric__slug")[:1]
    slug = Coalesce(Subquery(run_rubric), Subquery(character_rubric))
    latest = rubrics.filter(slug=slug).order_by("-version").first()
    return latest or rubrics.order_by("-created_at", "-id").first()


def group_originals(group: Group) -> QuerySet[Generation]:
    """The G completions a reviewer rates: each slot's original text (rewrites and
    revisions hang off these as children)."""
    return group.generations.filter(revision=0).order_by("index")


def review_generations(assignment: Assignment) -> list[Generation]:
    """The group's completions in the order this reviewer is shown them, with their judge
    judgments (and scores) and this reviewer's rewrites."""
    by_id = {
        g.pk: g
        for g in group_originals(assignment.group).prefetch_related(
            Prefetch(
                "judgments",
                queryset=Judgment.objects.filter(source=Judgment.Source.JUDGE)
                .prefetch_related(Prefetch("scores", queryset=CriterionScore.objects.select_related("criterion")))
                .order_by("-created_at"),
                to_attr="judge_judgments",
            ),
            Prefetch(
                "revisions",
                queryset=Generation.objects.filter(
                    source=Generation.Source.HUMAN_REWRITE, author=assignment.reviewer_id
                ).order_by("-revision"),
                to_attr="my_rewrites",
            ),
        )
    }
    return [by_id[pk] for pk in shown_order(assignment, by_id.values())]


def shown_order(assignment: Assignment, generations: Iterable[Generation]) -> list[int]:
    """The ids of `generations` in the order the reviewer was shown them (any the recorded
    order lacks follow by index)."""
    by_id = {g.pk: g for g in generations}
    ordered = [pk for pk in assignment.shown_order if pk in by_id]
    seen = set(ordered)
    rest = sorted((g for pk, g in by_id.items() if pk not in seen), key=lambda g: g.index)
    return ordered + [g.pk for g in rest]


def reviewer_last_submission(*, reviewer) -> Judgment | None:
    return (
        Judgment.objects.filter(reviewer=reviewer, source=Judgment.Source.HUMAN, submission_id__isnull=False)
        .select_related("generation")
        .order_by("-created_at", "-id")
        .first()
    )
