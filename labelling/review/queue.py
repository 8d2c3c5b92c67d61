"""The review queue's stored state per group: whether it is ready for review and its bucket.

Both follow from a group's completions and judgments, so every writer of those refreshes it
(the run services, the review services, a data migration, a bulk fill).
"""

from __future__ import annotations

from collections.abc import Iterable

from labelling.models import Group
from labelling.review import selectors


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
