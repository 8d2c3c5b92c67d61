"""Concurrency in tests without sleeps: calls that wait for each other instead of for the clock."""

from __future__ import annotations

import threading
from contextlib import contextmanager


class InFlight:
    """Counts calls in flight and the most at once. With `meet`, each call waits (up to
    `timeout_s`) until `meet` calls are in flight together, so a test of concurrency sees them
    overlap whatever the machine's speed; calls made one at a time wait out the timeout and
    leave `most` below `meet`, which the test then asserts."""

    def __init__(self, meet: int | None = None, timeout_s: float = 10.0) -> None:
        self.meet, self.timeout_s = meet, timeout_s
        self.lock = threading.Lock()
        self.met = threading.Event()
        self.now = self.most = 0

    @contextmanager
    def call(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            if self.meet is not None and self.now >= self.meet:
                self.met.set()
        try:
            if self.meet is not None:
                self.met.wait(self.timeout_s)
            yield
        finally:
            with self.lock:
                self.now -= 1
