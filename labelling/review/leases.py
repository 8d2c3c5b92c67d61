"""Seats under a lease: how a reviewer takes one of the seats of something to review (a group of
completions, a blind A/B pair). A seat is taken while its row is submitted, or active under a
lease that has not run out; a reviewer holds at most one seat per item, and only a hold that
ran out may be taken again. The group queue (`review.services`) and the pair queue
(`evaluation.pairs`) both claim through `seat_take`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

ACTIVE, SUBMITTED = "active", "submitted"  # Assignment.Status and PairChoice.Status alike

Seat = TypeVar("Seat")


def lease_end(now):
    return now + timedelta(minutes=settings.REVIEW_LEASE_MINUTES)


def _seat_taken(now) -> Q:
    """A row that uses one of its item's seats: submitted, or held under a lease that has not
    run out."""
    return Q(status=SUBMITTED) | Q(status=ACTIVE, leased_until__gt=now)


def seat_take(*, seats: QuerySet, reviewer, overlap_target: int, now, create: Callable[[], Seat]) -> Seat | None:
    """The reviewer's seat among `seats` (one item's rows), or None when the item is full or the
    reviewer's own hold is still live elsewhere. Call it with the item's row locked: claimers of
    one item take turns. Only a hold that ran out is renewed, by a conditional write, so two tabs
    renewing at once renew it once; a new seat is `create()`d, and a second tab's at the same
    moment is refused by the rows' uniqueness."""
    if seats.filter(_seat_taken(now)).exclude(reviewer=reviewer).count() >= overlap_target:
        return None
    mine = seats.filter(reviewer=reviewer).first()
    if mine is not None:
        renewed = seats.filter(pk=mine.pk, status=ACTIVE, leased_until__lte=now).update(leased_until=lease_end(now))
        if not renewed:
            return None
        mine.refresh_from_db()
        return mine
    try:
        with transaction.atomic():
            return create()
    except IntegrityError:  # the same reviewer claimed it from another tab
        return None
