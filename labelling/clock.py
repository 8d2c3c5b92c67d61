"""One clock for every host: the database's.

A run's heartbeat is written by the worker that holds it and judged stale by another host's
watchdog; a reviewer's lease is written by one web process and checked by the next, behind the
proxy; readiness compares a consumer's heartbeat with the web process's time. When those hosts'
clocks differ, each comparing against its own clock would take over healthy runs (a worker
whose clock runs behind looks dead; a watchdog whose clock runs ahead finds every run stale) or
keep a dead one. So every time that another host compares is by the database's clock:
PostgreSQL's `clock_timestamp()` (the time now, not the transaction's start), as this host's
clock plus the offset between the two, measured with one query every OFFSET_KEPT_S. With SQLite the
database runs inside this process and has no clock of its own, so it is this process's clock,
without a query (the embedded default is one host).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now
from django.utils import timezone

# How far this host's clock is from the database's, measured with one query and kept this long
# (on the monotonic clock): a heartbeat, a lease or a page costs no query of its own for it.
OFFSET_KEPT_S = 30.0
# A wall clock that moved more than this against the monotonic one since the measurement (a
# step by NTP, a suspended machine) is measured again at once.
JUMP_S = 1.0

_measured: dict[str, tuple[float, datetime, timedelta]] = {}  # alias -> (monotonic, wall, offset)


def now() -> datetime:
    """The current time by the database's clock (aware, UTC): this host's clock plus its measured
    offset from the database's."""
    local = timezone.now()
    if connection.vendor != "postgresql":
        return local
    mono = time.monotonic()
    measured = _measured.get(connection.alias)
    if measured is not None:
        at, wall, offset = measured
        if mono - at < OFFSET_KEPT_S and abs((local - wall).total_seconds() - (mono - at)) < JUMP_S:
            return local + offset
    return local + _measure(connection.alias)


def _measure(alias: str) -> timedelta:
    """Ask the database for its time; the offset against the middle of the round trip."""
    before = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (value,) = cursor.fetchone()
    after = timezone.now()
    value = value if timezone.is_aware(value) else timezone.make_aware(value, timezone.utc)
    offset = value - (before + (after - before) / 2)
    _measured[alias] = (time.monotonic(), after, offset)
    return offset


def ago(seconds: float) -> ExpressionWrapper:
    """`seconds` before now by the database's clock, as an expression for a filter: no query of
    its own (a page that reads a fixed number of queries stays so)."""
    return ExpressionWrapper(Now() - timedelta(seconds=seconds), output_field=DateTimeField())
