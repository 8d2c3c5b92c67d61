"""Keep `serve`'s children up: one that dies is logged and started again, with a backoff that
grows while it keeps dying and resets once it has stayed up.

A background worker or the inference server dying must not take the site down with it:
reviewers keep reviewing while tritonserver or the huey consumer come back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

STOP_TIMEOUT_S = 20
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # up this long: the next death starts the backoff afresh


class Child:
    """A command run in its own session."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name, self.argv = name, argv
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.backoff_s = BACKOFF_FIRST_S
        self.due_at: float | None = None  # when a dead child is started again

    def launch(self) -> None:
        self.process = subprocess.Popen(self.argv, start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def terminate(self) -> None:
        if self.process is not None:
            terminate(self.process)


class TritonChild(Child):
    """The bundled tritonserver, watched directly (it runs in a session of its own, so a wrapper
    process between it and the supervisor would leave it orphaned, holding its port)."""

    def __init__(self, server, prepare: Callable[[], object] | None = None) -> None:
        # server: an inference.triton_server.TritonProcess; prepare: run before each start (the
        # model repository written afresh from the ready generator versions)
        super().__init__("triton", [])
        self.server = server
        self.prepare = prepare

    def launch(self) -> None:
        if self.prepare is not None:
            self.prepare()
        self.server.start(wait=False)
        self.process = self.server.process

    def terminate(self) -> None:
        self.server.stop()


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} serve: {message}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, children: list[Child], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.children = children
        self.clock = clock
        self._stopping = threading.Event()

    def start(self) -> None:
        for child in self.children:
            self._launch(child)

    def _launch(self, child: Child) -> None:
        child.launch()
        child.started_at = self.clock()
        child.due_at = None

    def check(self) -> None:
        """One look at every child: schedule a restart for the dead, start those that are due."""
        now = self.clock()
        for child in self.children:
            if self._stopping.is_set():
                return
            if child.alive():
                continue
            if child.due_at is None:
                up = now - child.started_at
                if up >= STABLE_AFTER_S:
                    child.backoff_s = BACKOFF_FIRST_S
                log(
                    f"{child.name} exited with code {child.exit_code()} after {up:.0f}s; "
                    f"restarting in {child.backoff_s:.0f}s (restart {child.restarts + 1})"
                )
                child.due_at = now + child.backoff_s
                child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
            elif now >= child.due_at:
                child.restarts += 1
                try:
                    self._launch(child)
                except OSError as exc:  # e.g. the binary is gone: keep trying, with the backoff
                    log(f"{child.name} could not start: {exc}")
                    child.started_at, child.due_at = now, None
                    continue
                log(f"{child.name} started again (pid {child.pid()})")

    def run(self, interval_s: float = 0.5) -> None:
        """Check until stopped (by `stop`, from a signal handler or another thread)."""
        while not self._stopping.wait(interval_s):
            self.check()

    def run_in_background(self, interval_s: float = 0.5) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(interval_s,), name="serve-supervisor", daemon=True)
        thread.start()
        return thread

    def request_stop(self) -> None:
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        for child in reversed(self.children):
            child.terminate()


def terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
