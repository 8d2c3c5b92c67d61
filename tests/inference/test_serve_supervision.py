"""`serve` keeps its children up: a SIGKILLed tritonserver or huey consumer is logged and
started again while the site keeps answering, and /readyz says what is down meanwhile.

The app runs as `make run` runs it (`manage.py serve`), on its own database; the processes
are killed for real.
"""

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from inference.triton_server import free_port
from shaping_web.supervisor import Child, Supervisor
from tests.browser.conftest import LiveApp


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait(what: str, check, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _pids(*needles: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            found.append(int(entry.name))
    return found


@pytest.fixture
def managed_app(tmp_path):
    port = free_port()
    app = LiveApp(tmp_path, f"127.0.0.1:{port}")
    app.env["TRITON_MANAGED"] = "1"  # serve starts and watches the bundled server on that port
    app.triton_port = port
    yield app
    app.stop()


@pytest.mark.slow
@pytest.mark.triton  # serve starts and watches its own tritonserver
def test_a_killed_tritonserver_is_restarted_and_readyz_follows(managed_app):
    app = managed_app.start()
    log = app.data_dir / "serve.log"
    _wait("the models to be ready", lambda: _get(f"{app.url}/readyz")[0] == 200, 180, log)
    assert _get(f"{app.url}/readyz")[1] == {
        "ok": True,
        "database": True,
        "queue": True,
        "models": {"qwen3": True, "judge": True},
        "consumers": {"pipeline": True, "train": True},
    }
    [pid] = _pids("tritonserver", f"--grpc-port={app.triton_port}")
    os.kill(pid, signal.SIGKILL)
    _wait("readyz to report the models down", lambda: _get(f"{app.url}/readyz")[0] == 503, 30, log)
    status, body = _get(f"{app.url}/readyz")
    assert body["database"] is True and "127.0.0.1" not in json.dumps(body)  # what is down, not where
    assert _get(f"{app.url}/healthz") == (200, {"ok": True})  # the site itself stays up
    _wait("the restarted server's models", lambda: _get(f"{app.url}/readyz")[0] == 200, 180, log)
    text = log.read_text()
    assert "serve: triton exited with code -9" in text and "serve: triton started again" in text
    assert _pids("tritonserver", f"--grpc-port={app.triton_port}") != [pid]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="serve runs separate processes only with Redis")
def test_with_redis_a_killed_huey_consumer_is_restarted_and_the_site_stays_up(managed_app):
    app = managed_app
    app.env["REDIS_URL"] = os.environ["REDIS_URL"]
    app.env["TRITON_MANAGED"] = "0"
    app.start()
    log = app.data_dir / "serve.log"
    _wait("the huey consumer", lambda: _pids("run_huey", str(app.data_dir)), 60, log)
    [pid] = _pids("run_huey", str(app.data_dir))
    os.kill(pid, signal.SIGKILL)
    _wait("huey to be started again", lambda: _pids("run_huey", str(app.data_dir)) not in ([], [pid]), 60, log)
    assert _get(f"{app.url}/healthz") == (200, {"ok": True})
    assert app.process.poll() is None
    assert "serve: huey exited with code -9" in log.read_text()


# --- the supervisor's rules, on real child processes ------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _dead(child: Child) -> None:
    os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait()


def test_the_backoff_doubles_while_a_child_keeps_dying_and_resets_once_it_stays_up(capsys):
    clock = Clock()
    child = Child("sleeper", ["sleep", "300"])
    supervisor = Supervisor([child], clock=clock)
    supervisor.start()
    try:
        waits = []
        for _ in range(3):
            first = child.process.pid
            _dead(child)
            supervisor.check()  # noticed: a restart is due after the backoff
            waits.append(child.due_at - clock.now)
            clock.now = child.due_at
            supervisor.check()
            assert child.alive() and child.process.pid != first
        assert waits == [1.0, 2.0, 4.0]
        clock.now += 61  # up long enough: the next death starts from the first delay again
        _dead(child)
        supervisor.check()
        assert child.due_at - clock.now == 1.0
        assert child.restarts == 3
        err = capsys.readouterr().err
        assert err.count("serve: sleeper exited with code -9") == 4
        assert "restarting in 4s (restart 3)" in err
    finally:
        supervisor.stop()
    assert not child.alive()
