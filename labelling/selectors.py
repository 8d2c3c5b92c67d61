"""Reads: QuerySets and small aggregates shared by views, the API and the admin."""

from collections import Counter

from django.db.models import (
    Avg,
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Abs, Coalesce
from django.shortcuts import get_object_or_404
from django.utils import timezone

from labelling.models import (
    Assignment,
    Character,
    Generation,
    Group,
    Judgment,
    PipelineRun,
    Rubric,
)


def dashboard_counts() -> dict[str, int]:
    groups = Group.objects.aggregate(
        total=Count("id"),
        awaiting=Count("id", filter=Q(review_count__lt=F("overlap_target"))),
    )
    return {
        "groups": groups["total"],
        "groups_awaiting_review": groups["awaiting"],
        "generations": Generation.objects.count(),
        "human_judgments": Judgment.objects.filter(source=Judgment.Source.HUMAN).count(),
        "judge_judgments": Judgment.objects.filter(source=Judgment.Source.JUDGE).count(),
    }


def recent_runs() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("character", "prompt_set", "rubric").order_by(
        "-created_at"
    )


def characters_with_counts() -> QuerySet[Character]:
    return Character.objects.annotate(group_count=Count("groups")).order_by("name")


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

# The buckets of the "signal" policy, in the order they are served.
BUCKET_NO_SIGNAL, BUCKET_DISAGREE, BUCKET_JUDGE_FAILED, BUCKET_REST = range(4)
QUEUE_BUCKETS = {
    BUCKET_NO_SIGNAL: "Judge rewards all equal (no GRPO signal)",
    BUCKET_DISAGREE: "Judge and reviewers disagree",
    BUCKET_JUDGE_FAILED: "Judge failed on a completion",
    BUCKET_REST: "Everything else, oldest first",
}
# Judge and human overall scores live on 0..1; a gap this wide counts as disagreement.
DISAGREEMENT_GAP = 0.25


def _seat_taken(now, prefix: str = "") -> Q:
    """An assignment that uses one of a group's review seats: submitted, or held
    under a lease that has not run out."""
    status, leased = f"{prefix}status", f"{prefix}leased_until"
    return Q(**{status: Assignment.Status.SUBMITTED}) | Q(
        **{status: Assignment.Status.ACTIVE, f"{leased}__gt": now}
    )


def _expired_hold(now) -> Q:
    return Q(status=Assignment.Status.ACTIVE, leased_until__lte=now)


def group_seats_taken(group: Group, *, now=None, exclude_reviewer=None) -> int:
    now = now or timezone.now()
    seats = group.assignments.filter(_seat_taken(now))
    if exclude_reviewer is not None:
        seats = seats.exclude(reviewer=exclude_reviewer)
    return seats.count()


def _with_buckets(groups: QuerySet[Group]) -> QuerySet[Group]:
    judge_ok = Judgment.objects.filter(
        generation__group=OuterRef("pk"),
        source=Judgment.Source.JUDGE,
        status=Judgment.Status.OK,
    )
    judged = (
        judge_ok.order_by()
        .values("generation__group")
        .annotate(n=Count("generation", distinct=True))
        .values("n")[:1]
    )
    human_ok = Q(judgments__source=Judgment.Source.HUMAN, judgments__status=Judgment.Status.OK)
    judge_ok_q = Q(judgments__source=Judgment.Source.JUDGE, judgments__status=Judgment.Status.OK)
    disagreeing = (
        Generation.objects.filter(group=OuterRef("pk"))
        .annotate(
            human=Avg("judgments__overall", filter=human_ok),
            judge=Avg("judgments__overall", filter=judge_ok_q),
        )
        .filter(human__isnull=False, judge__isnull=False)
        .annotate(gap=Abs(F("human") - F("judge")))
        .filter(gap__gte=DISAGREEMENT_GAP)
    )
    judge_failed = Judgment.objects.filter(
        generation__group=OuterRef("pk"),
        source=Judgment.Source.JUDGE,
        status=Judgment.Status.FAILED,
    )
    return groups.annotate(
        judge_min=Subquery(judge_ok.order_by("overall").values("overall")[:1]),
        judge_max=Subquery(judge_ok.order_by("-overall").values("overall")[:1]),
        judged=Coalesce(Subquery(judged), 0),
        disagree=Exists(disagreeing),
        judge_failed=Exists(judge_failed),
    ).annotate(
        bucket=Case(
            # Equal rewards for every completion: group-relative advantage is zero,
            # so the group teaches the trainer nothing until a human separates them.
            When(Q(judged__gte=2, judge_min=F("judge_max")), then=Value(BUCKET_NO_SIGNAL)),
            When(disagree=True, then=Value(BUCKET_DISAGREE)),
            When(judge_failed=True, then=Value(BUCKET_JUDGE_FAILED)),
            default=Value(BUCKET_REST),
            output_field=IntegerField(),
        )
    )


def review_queue(*, reviewer, policy: str = DEFAULT_POLICY, now=None) -> QuerySet[Group]:
    """Groups this reviewer may be offered next, in the policy's order.

    A group is open while its submitted reviews plus unexpired holds are fewer than
    its overlap target. A reviewer is never offered a group twice, except one whose
    hold on it ran out while nobody else took the seat.
    """
    if policy not in QUEUE_POLICIES:
        raise ValueError(f"unknown queue policy {policy!r}")
    now = now or timezone.now()
    seen_before = Assignment.objects.filter(group=OuterRef("pk"), reviewer=reviewer).exclude(
        _expired_hold(now)
    )
    originals = (
        Generation.objects.filter(group=OuterRef("pk"), revision=0)
        .order_by()
        .values("group")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    groups = (
        Group.objects.annotate(
            seats_taken=Count(
                "assignments", filter=_seat_taken(now, "assignments__"), distinct=True
            ),
            completions=Coalesce(Subquery(originals), 0),
        )
        .filter(seats_taken__lt=F("overlap_target"))
        # A group still being generated is not ready: a review must cover all G.
        .filter(completions__gte=F("size"))
        .exclude(Exists(seen_before))
    )
    groups = _with_buckets(groups)
    if policy == POLICY_FIFO:
        return groups.order_by("created_at", "id")
    return groups.order_by("bucket", "created_at", "id")


def review_queue_summary(*, reviewer, policy: str = DEFAULT_POLICY) -> dict:
    """How many open groups fall in each bucket, for the queue header."""
    counts = Counter(
        review_queue(reviewer=reviewer, policy=policy).values_list("bucket", flat=True)
    )
    return {
        "total": sum(counts.values()),
        "buckets": [
            {"key": key, "label": label, "count": counts.get(key, 0)}
            for key, label in QUEUE_BUCKETS.items()
        ],
    }


def assignment_current(*, reviewer, now=None) -> Assignment | None:
    """The group the reviewer holds now (reloading the queue returns it)."""
    now = now or timezone.now()
    return (
        Assignment.objects.filter(
            reviewer=reviewer, status=Assignment.Status.ACTIVE, leased_until__gt=now
        )
        .select_related("group")
        .order_by("created_at", "id")
        .first()
    )


def assignments_expired(*, reviewer, now=None) -> QuerySet[Assignment]:
    """The reviewer's holds that ran out: renewed first if their seat is still free."""
    now = now or timezone.now()
    return Assignment.objects.filter(_expired_hold(now), reviewer=reviewer).order_by(
        "created_at", "id"
    )


def assignment_for_reviewer(*, reviewer, assignment_id: int) -> Assignment:
    """An assignment the reviewer owns, with what the group view needs; 404 otherwise."""
    return get_object_or_404(
        Assignment.objects.select_related(
            "group", "group__prompt", "group__character", "group__prompt__prompt_set"
        ),
        pk=assignment_id,
        reviewer=reviewer,
    )


def group_rubric(group: Group) -> Rubric | None:
    """The rubric a group is reviewed against: the latest version of the rubric its
    judge judgments used, else the newest rubric there is."""
    slug = (
        Judgment.objects.filter(generation__group=group, source=Judgment.Source.JUDGE)
        .order_by("-created_at", "-id")
        .values_list("rubric__slug", flat=True)
        .first()
    )
    rubrics = Rubric.objects.prefetch_related("criteria")
    if slug is not None:
        return rubrics.filter(slug=slug).order_by("-version").first()
    return rubrics.order_by("-created_at", "-id").first()


def group_originals(group: Group) -> QuerySet[Generation]:
    """The G completions a reviewer rates: each slot's original text (rewrites and
    revisions hang off these as children)."""
    return group.generations.filter(revision=0).order_by("index")


def review_generations(assignment: Assignment) -> list[Generation]:
    """The group's completions in the order this reviewer is shown them."""
    by_id = {
        g.pk: g
        for g in group_originals(assignment.group).prefetch_related(
            Prefetch(
                "judgments",
                queryset=Judgment.objects.filter(source=Judgment.Source.JUDGE)
                .select_related("rubric")
                .prefetch_related("scores__criterion")
                .order_by("-created_at"),
                to_attr="judge_judgments",
            ),
            Prefetch(
                "revisions",
                queryset=Generation.objects.filter(
                    source=Generation.Source.HUMAN_REWRITE, author=assignment.reviewer
                ).order_by("-revision"),
                to_attr="my_rewrites",
            ),
        )
    }
    ordered = [by_id.pop(pk) for pk in assignment.shown_order if pk in by_id]
    return ordered + sorted(by_id.values(), key=lambda g: g.index)


def reviewer_last_submission(*, reviewer) -> Judgment | None:
    return (
        Judgment.objects.filter(
            reviewer=reviewer, source=Judgment.Source.HUMAN, submission_id__isnull=False
        )
        .select_related("generation")
        .order_by("-created_at", "-id")
        .first()
    )
