"""The generator-task runtime: tasks yield backend calls, a TaskManager runs many at once.

A task is a generator. It yields a `Call` (or a list of them, run in parallel) and
is sent back the result (for a list: a list, where a call that failed appears as
its exception instead of a result). A single call that fails after its retries is
thrown into the task, which may catch it. The task's return value is its result
dict. Whatever escapes the task becomes a `TaskFailed` record for that item:
no item is ever lost.

The same tasks run from huey (database runs) and from the file-mode CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from inference.errors import BackendUnavailable

log = logging.getLogger(__name__)


@dataclass
class Call:
    """One backend call: `backend.<method>(request, **kwargs)`."""

    method: str  # "generate" | "judge"
    request: Any
    kwargs: dict = field(default_factory=dict)


Task = Generator["Call | list[Call]", Any, dict]


@dataclass
class TaskFailed:
    """A task that raised: kept with the item it was for."""

    key: Any
    error_type: str
    message: str
    attempts: int = 1
    traceback: str = ""

    def as_dict(self) -> dict:
        return {"item": self.key, "error": self.error_type, "message": self.message, "attempts": self.attempts}


@dataclass
class Outcome:
    key: Any
    result: dict | None = None
    failure: TaskFailed | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.cancelled


class Cancelled(Exception):
    """Raised inside a task's runner when the manager is cancelled."""


class TaskManager:
    """Runs tasks concurrently over one backend.

    - at most `workers` tasks at once (and as many calls from a task's parallel list);
    - transient backend errors (BackendUnavailable, TimeoutError) are retried
      `retries` times with exponential backoff and jitter;
    - `is_cancelled()` is polled between calls: a cancelled task stops at its next
      yield and reports `cancelled`;
    - a backend that stays down (`breaker` calls in a row failed after all their
      retries) is not retried further: later calls fail at once, so a run against a
      dead server ends quickly, every item recorded as failed, ready to resume;
    - outcomes are yielded as tasks finish, in completion order.
    """

    TRANSIENT: tuple[type[BaseException], ...] = (BackendUnavailable, TimeoutError, ConnectionError)

    def __init__(
        self,
        backend: Any,
        *,
        workers: int = 4,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        is_cancelled: Callable[[], bool] = lambda: False,
        on_thread_exit: Callable[[], None] | None = None,
        breaker: int = 3,
        client: str = "",
    ):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.backend = backend
        self.workers = workers
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.is_cancelled = is_cancelled
        self.on_thread_exit = on_thread_exit
        self.breaker = breaker
        # Named on every request that names no client, so a batching engine takes this
        # manager's requests in turn with other clients' (inference/engine/batching.py).
        self.client = client
        self._exhausted = 0  # calls in a row that failed after every retry
        self._calls = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="call")

    def run(self, items: Iterable[tuple[Any, Callable[[], Task]]]) -> Iterator[Outcome]:
        """Run `make_task()` for each `(key, make_task)`; yield each Outcome as it ends."""
        pending: dict[Future, Any] = {}
        source = iter(items)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="task") as tasks:
            try:
                self._fill(tasks, source, pending)
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        pending.pop(future)
                        yield future.result()
                    self._fill(tasks, source, pending)
            finally:
                for future in pending:
                    future.cancel()
        self._calls.shutdown(wait=True)

    def _fill(self, pool: ThreadPoolExecutor, source: Iterator, pending: dict) -> None:
        # Keep the pool just full: items are produced lazily so a huge input never
        # sits in memory, and cancellation stops new work from being started.
        while len(pending) < self.workers:
            try:
                key, make_task = next(source)
            except StopIteration:
                return
            pending[pool.submit(self._drive, key, make_task)] = key

    def _drive(self, key: Any, make_task: Callable[[], Task]) -> Outcome:
        try:
            if self.is_cancelled():
                return Outcome(key, cancelled=True)
            return self._drive_task(key, make_task())
        except Exception as exc:  # a task that cannot even be built is still an outcome
            return Outcome(key, failure=_failure(key, exc, 1))
        finally:
            if self.on_thread_exit:
                self.on_thread_exit()

    def _drive_task(self, key: Any, task: Task) -> Outcome:
        value: Any = None
        error: BaseException | None = None
        attempts = 1
        while True:
            try:
                step = task.throw(error) if error is not None else task.send(value)
            except StopIteration as stop:
                return Outcome(key, result=stop.value if stop.value is not None else {})
            except Exception as exc:
                return Outcome(key, failure=_failure(key, exc, attempts))
            value, error = None, None
            if self.is_cancelled():
                task.close()
                return Outcome(key, cancelled=True)
            if isinstance(step, list):
                value = self._call_many(step)
            else:
                try:
                    value, attempts = self._call(step)
                except Exception as exc:
                    error, attempts = exc, getattr(exc, "attempts", 1)

    def _call_many(self, calls: list[Call]) -> list[Any]:
        futures = [self._calls.submit(self._call, c) for c in calls]
        results = []
        for f in futures:
            try:
                results.append(f.result()[0])
            except Exception as exc:
                results.append(exc)
        return results

    def _call(self, call: Call) -> tuple[Any, int]:
        method = getattr(self.backend, call.method)
        request = call.request
        if self.client and getattr(request, "client", None) == "":
            request = dataclasses.replace(request, client=self.client)
        retries = 0 if self._exhausted >= self.breaker else self.retries
        for attempt in range(1, retries + 2):
            try:
                result = method(request, **call.kwargs)
                self._exhausted = 0
                return result, attempt
            except self.TRANSIENT as exc:
                if attempt > retries or self.is_cancelled():
                    self._exhausted += 1
                    exc.attempts = attempt  # reported with the failure record
                    raise
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random()  # noqa: S311 - jitter, not crypto
                log.warning("%s failed (%s); retry %d/%d in %.1fs", call.method, exc, attempt, retries, delay)
                _sleep_unless(self.is_cancelled, delay)
        raise AssertionError("unreachable")


def _sleep_unless(is_cancelled: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not is_cancelled():
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _failure(key: Any, exc: BaseException, attempts: int) -> TaskFailed:
    message = str(exc) or exc.__class__.__name__
    return TaskFailed(key, exc.__class__.__name__, message, attempts, traceback.format_exc(limit=8))


class Throttle:
    """Coalesces many small pieces (streamed tokens) into fewer, timed flushes.

    A timer sends what is held: `gather_s` after a piece that follows a quiet interval
    (so the other completions' pieces of the same step go in the same flush), else when
    `interval_s` has passed since the last flush. No piece waits for a later one, and
    none waits longer than the interval. Flushes run one at a time, in order."""

    def __init__(self, flush: Callable[[dict[int, str]], None], interval_s: float = 0.05, gather_s: float = 0.005):
        self._flush = flush
        self._interval = interval_s
        self._gather = gather_s
        self._buffer: dict[int, str] = {}
        self._last = time.monotonic() - interval_s
        self._lock = threading.Lock()  # held while flushing: flushes never overtake each other
        self._timer: threading.Timer | None = None
        self._closed = False

    def add(self, index: int, piece: str) -> None:
        with self._lock:
            self._buffer[index] = self._buffer.get(index, "") + piece
            if self._timer is None and not self._closed:
                wait = max(self._gather, self._interval - (time.monotonic() - self._last))
                self._timer = threading.Timer(wait, self._due)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """Send what is held now; nothing is sent after this returns."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._send()

    def _due(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._send()

    def _send(self) -> None:
        if self._buffer:
            pieces, self._buffer, self._last = self._buffer, {}, time.monotonic()
            self._flush(pieces)
