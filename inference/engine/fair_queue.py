"""Who goes next: the queue of requests waiting for a batch, fair between clients, and the
recent tokens a second. Shared by the CPU batcher and onnxruntime-genai's paged engine."""

from __future__ import annotations

from collections import deque

from inference.engine.contract import EngineBusy

INTERACTIVE = "interactive"


def tokens_per_s(recent) -> float:
    """Tokens a second over recent steps, given as (monotonic time, tokens) pairs."""
    recent = list(recent)
    if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
        return sum(tokens for _, tokens in recent[1:]) / (recent[-1][0] - recent[0][0])
    return 0.0


class FairQueue:
    """Requests waiting for the batch, in the order they are admitted: interactive ones (a
    reviewer waiting) first, then one request per client (a run) in turn. Not thread-safe:
    its engine holds its lock around every call."""

    def __init__(self, limit: int):
        self.limit = limit
        self._waiting: dict[str, deque] = {}  # per client, in arrival order
        self._turns: deque[str] = deque()  # clients in the order they are served next
        self.count = 0

    def push(self, job) -> None:
        """Queue `job` (with .client and .priority), or refuse it with EngineBusy when full."""
        if self.count >= self.limit:
            raise EngineBusy(f"the engine's queue is full ({self.count} requests waiting); retry later")
        key = INTERACTIVE if job.priority == INTERACTIVE else job.client
        if key not in self._waiting:
            self._waiting[key] = deque()
            if key == INTERACTIVE:
                self._turns.appendleft(key)
            else:
                self._turns.append(key)
        self._waiting[key].append(job)
        self.count += 1

    def admit(self, fits, gone) -> list:
        """The waiting requests that `fits(job)` takes, in order. The head of the line waits
        for room: nobody behind it jumps it, so nobody starves. Requests cancelled while
        waiting (`job.cancelled` set) leave through `gone(job)`."""
        admitted = []
        while self._turns:
            key = self._turns[0]
            jobs = self._waiting[key]
            while jobs and jobs[0].cancelled.is_set():
                self.count -= 1
                gone(jobs.popleft())
            if jobs:
                if not fits(jobs[0]):
                    break
                self.count -= 1
                admitted.append(jobs.popleft())
            if not jobs:
                del self._waiting[key]
                self._turns.popleft()
            elif key != INTERACTIVE:
                self._turns.rotate(-1)
        return admitted

    def drain(self) -> list:
        """Every waiting request, taken out of the queue."""
        jobs = [job for waiting in self._waiting.values() for job in waiting]
        self._waiting.clear()
        self._turns.clear()
        self.count = 0
        return jobs
