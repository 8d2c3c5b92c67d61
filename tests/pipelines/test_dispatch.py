"""The task runtime: parallel calls, retries, failures kept with their item, cancellation.

These are unit tests of the runtime alone, over a scripted stand-in backend; the
pipelines are tested end to end against the real Triton server elsewhere.
"""

import threading
import time

import pytest

from inference.dispatch import Call, TaskManager, Throttle
from inference.errors import BackendUnavailable
from tests.concurrency import InFlight


class ScriptedBackend:
    """Echoes in capitals, after `fail_times` scripted failures; with `meet`, its calls wait for
    each other until that many are in flight (`tests.concurrency.InFlight`)."""

    def __init__(self, fail_times: int = 0, error: type[Exception] = BackendUnavailable, meet: int | None = None):
        self.fail_times = fail_times
        self.error = error
        self.calls = 0
        self.lock = threading.Lock()
        self.in_flight = InFlight(meet)

    def echo(self, request):
        with self.lock:
            self.calls += 1
            failing = self.calls <= self.fail_times
        with self.in_flight.call():
            if failing:
                raise self.error(f"scripted failure {self.calls}")
            return request.upper()


def echo_task(text):
    result = yield Call("echo", text)
    return {"text": result}


def fanout_task(texts):
    results = yield [Call("echo", t) for t in texts]
    return {"results": [r if isinstance(r, str) else f"error: {r}" for r in results]}


def _run(manager, items):
    return {o.key: o for o in manager.run(items)}


def test_each_task_gets_its_call_result_back():
    outcomes = _run(TaskManager(ScriptedBackend(), workers=3), [(i, lambda i=i: echo_task(f"x{i}")) for i in range(10)])
    assert {k: o.result["text"] for k, o in outcomes.items()} == {i: f"X{i}" for i in range(10)}


def test_a_list_of_calls_runs_in_parallel_and_returns_in_order():
    backend = ScriptedBackend(meet=4)
    (outcome,) = TaskManager(backend, workers=4).run([("k", lambda: fanout_task(["a", "b", "c", "d"]))])
    assert outcome.result == {"results": ["A", "B", "C", "D"]}
    assert backend.in_flight.most == 4


def test_no_more_than_workers_tasks_run_at_once():
    backend = ScriptedBackend(meet=2)  # two meet at once; a third would only ever run beside them
    list(TaskManager(backend, workers=2).run([(i, lambda: echo_task("x")) for i in range(8)]))
    assert backend.in_flight.most == 2


def test_transient_errors_are_retried():
    backend = ScriptedBackend(fail_times=2)
    (outcome,) = TaskManager(backend, workers=1, retries=3, backoff_s=0.001).run([("k", lambda: echo_task("x"))])
    assert outcome.ok and outcome.result == {"text": "X"} and backend.calls == 3


def test_a_call_still_failing_after_its_retries_becomes_a_failure_record():
    backend = ScriptedBackend(fail_times=99)
    (outcome,) = TaskManager(backend, workers=1, retries=2, backoff_s=0.001).run([("item-7", lambda: echo_task("x"))])
    assert not outcome.ok
    assert outcome.failure.as_dict() == {
        "item": "item-7",
        "error": "BackendUnavailable",
        "message": "scripted failure 3",
        "attempts": 3,
    }


def test_a_non_transient_error_is_not_retried():
    backend = ScriptedBackend(fail_times=1, error=ValueError)
    (outcome,) = TaskManager(backend, workers=1, retries=3, backoff_s=0.001).run([("k", lambda: echo_task("x"))])
    assert outcome.failure.error_type == "ValueError" and backend.calls == 1


def test_a_task_may_catch_a_failed_call_and_carry_on():
    def careful():
        try:
            yield Call("echo", "x")
        except BackendUnavailable as exc:
            return {"recorded_failure": str(exc)}
        return {}

    (outcome,) = TaskManager(ScriptedBackend(fail_times=99), retries=0).run([("k", careful)])
    assert outcome.result == {"recorded_failure": "scripted failure 1"}


def test_one_failed_call_in_a_list_does_not_sink_the_others():
    backend = ScriptedBackend(fail_times=1, error=ValueError)
    (outcome,) = TaskManager(backend, workers=1, retries=0).run([("k", lambda: fanout_task(["a", "b"]))])
    results = outcome.result["results"]
    assert sorted(r.startswith("error") for r in results) == [False, True]


def test_a_task_that_raises_is_kept_as_a_failure_and_the_others_finish():
    def broken():
        yield Call("echo", "x")
        raise RuntimeError("bad row")

    items = [("bad", broken), *[(i, lambda: echo_task("y")) for i in range(3)]]
    outcomes = _run(TaskManager(ScriptedBackend(), workers=2), items)
    assert outcomes["bad"].failure.message == "bad row"
    assert all(outcomes[i].ok for i in range(3))


def test_cancelling_stops_the_remaining_tasks():
    cancelled = threading.Event()
    backend = ScriptedBackend()

    def task(i):
        result = yield Call("echo", "x")
        if i == 2:
            cancelled.set()
        return {"text": result}

    outcomes = list(
        TaskManager(backend, workers=1, is_cancelled=cancelled.is_set).run(
            [(i, lambda i=i: task(i)) for i in range(10)]
        )
    )
    # One worker: items 0..2 finish, every later one is reported cancelled without a call.
    assert [(o.key, o.ok, o.cancelled) for o in outcomes] == [(i, i <= 2, i > 2) for i in range(10)]
    assert backend.calls == 3


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        TaskManager(ScriptedBackend(), workers=0)


def test_throttle_coalesces_pieces_per_completion():
    flushed = []
    throttle = Throttle(flushed.append, interval_s=60, gather_s=60)
    for piece in ["a", "b", "c"]:
        throttle.add(0, piece)
    throttle.add(1, "z")
    assert flushed == []
    throttle.close()
    assert flushed == [{0: "abc", 1: "z"}]
    throttle.add(0, "late")  # after close: nothing more goes out
    assert flushed == [{0: "abc", 1: "z"}]


def _wait_for(flushed: list, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(flushed) < n and time.monotonic() < deadline:
        time.sleep(0.005)


def test_held_pieces_go_out_on_time_without_waiting_for_another():
    flushed = []
    throttle = Throttle(flushed.append, interval_s=0.3, gather_s=0.2)
    throttle.add(0, "a")
    throttle.add(1, "b")  # the same step: gathered into one flush
    _wait_for(flushed, 1)
    throttle.add(0, "c")  # within the interval: held, and nothing more comes
    _wait_for(flushed, 2)
    assert flushed == [{0: "a", 1: "b"}, {0: "c"}], "a held piece waited for a piece that never came"
    throttle.close()
    assert len(flushed) == 2


def test_a_backend_that_stays_down_is_not_retried_forever():
    backend = ScriptedBackend(fail_times=10_000)
    items = [(i, lambda: echo_task("x")) for i in range(10)]
    outcomes = _run(TaskManager(backend, workers=1, retries=2, backoff_s=0.001, breaker=3), items)
    assert all(not o.ok for o in outcomes.values()), "every item is recorded as failed"
    # 3 items with all their retries (3 calls each), then one call per item.
    assert backend.calls == 3 * 3 + 7


def test_the_breaker_closes_again_after_a_success():
    backend = ScriptedBackend(fail_times=9)  # three items' worth of failures, then up again
    items = [(i, lambda: echo_task("x")) for i in range(5)]
    outcomes = _run(TaskManager(backend, workers=1, retries=2, backoff_s=0.001, breaker=3), items)
    assert [outcomes[i].ok for i in range(5)] == [False, False, False, True, True]
