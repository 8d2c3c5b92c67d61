"""One clock for every host: the database's.

A run's heartbeat is written by the worker that holds it and judged stale by another host's
watchdog; a reviewer's lease is written by one web process and checked by the next, behind the
proxy; readiness compares a consumer's heartbeat with the web process's time. When those hosts'
clocks differ, each comparing against its own clock would take over healthy runs (a worker
whose clock runs behind looks dead; a watchdog whose clock runs ahead finds every run stale) or
keep a dead one. So every time that another host compares is read from the database:
PostgreSQL's `clock_timestamp()` (the time now, not the transaction's start). With SQLite the
database runs inside this process and has no clock of its own, so it is this process's clock,
without a query (the embedded default is one host).
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone


def now() -> datetime:
    """The current time by the database's clock (aware, UTC)."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (value,) = cursor.fetchone()
    return value if timezone.is_aware(value) else timezone.make_aware(value, timezone.utc)
