"""The review queue's stored state per group: whether it is ready for review and its bucket
(the "most informative first" policy's order).

Both follow from a group's completions and judgments, so every writer of those refreshes it
(`records.services`, the review services, a data migration, a bulk fill).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable

from labelling.models import Generation, Group, Judgment

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


def group_queue_refresh(group_id: int) -> None:
    """Store whether the group is ready for review and its queue bucket (both follow from
    its completions and judgments; every writer of those calls this)."""
    groups_queue_refresh([group_id])


def groups_queue_refresh(group_ids: Iterable[int]) -> int:
    """The same for many groups (a data migration, a bulk fill); returns how many changed."""
    changed = 0
    ids = list(group_ids)
    for start in range(0, len(ids), 500):
        for pk, ready, bucket in group_queue_state(ids[start : start + 500]):
            changed += (
                Group.objects.filter(pk=pk)
                .exclude(ready=ready, queue_bucket=bucket)
                .update(ready=ready, queue_bucket=bucket)
            )
    return changed


def queue_bucket(judgments: Iterable[tuple[int, str, str, float | None]]) -> int:
    """A group's bucket from its judgments, each (generation id, source, status, overall).

    No signal: the judge scored two completions or more, all alike (group-relative
    advantages are zero, so the group teaches the trainer nothing until a human separates
    them). Disagreement: on some completion the reviewers' mean and the judge's mean are
    DISAGREEMENT_GAP apart or more. Judge failed: an answer of the judge's did not parse.
    """
    judge: dict[int, list[float]] = defaultdict(list)
    human: dict[int, list[float]] = defaultdict(list)
    failed = False
    for generation_id, source, status, overall in judgments:
        if status == Judgment.Status.FAILED:
            failed = failed or source == Judgment.Source.JUDGE
            continue
        (judge if source == Judgment.Source.JUDGE else human)[generation_id].append(overall)
    judge_scores = [v for values in judge.values() for v in values]
    if len(judge) >= 2 and min(judge_scores) == max(judge_scores):
        return BUCKET_NO_SIGNAL
    for generation_id, values in human.items():
        if (
            generation_id in judge
            and abs(statistics.fmean(values) - statistics.fmean(judge[generation_id])) >= DISAGREEMENT_GAP
        ):
            return BUCKET_DISAGREE
    if failed:
        return BUCKET_JUDGE_FAILED
    return BUCKET_REST


def group_queue_state(group_ids: Iterable[int]) -> list[tuple[int, bool, int]]:
    """(id, ready, bucket) of each group, from its completions and judgments: what
    group_queue_refresh stores on it. Ready: all G original completions are in."""
    ids = list(group_ids)
    sizes = dict(Group.objects.filter(pk__in=ids).values_list("pk", "size"))
    originals = Counter(Generation.objects.filter(group_id__in=ids, revision=0).values_list("group_id", flat=True))
    judgments = defaultdict(list)
    for group_id, *row in Judgment.objects.filter(generation__group_id__in=ids).values_list(
        "generation__group_id", "generation_id", "source", "status", "overall"
    ):
        judgments[group_id].append(row)
    return [(pk, originals[pk] >= size, queue_bucket(judgments[pk])) for pk, size in sizes.items()]
