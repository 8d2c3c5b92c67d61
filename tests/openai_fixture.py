"""A real OpenAI-compatible server for the tests: `transformers serve` (transformers' own server)
on the tiny model's Hugging Face weights, on CPU, on a free loopback port.

Session-scoped and started on first use. If it cannot start, every test that needs it fails
with the server's log; nothing is skipped. Nothing is downloaded: the hub is off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from inference.endpoints import Endpoint
from inference.triton_server import free_port
from tests.triton_fixture import TINY_MODEL

TINY_HF = TINY_MODEL / "hf"
# What `transformers serve` does, declared (measured by tests/inference/test_backend_contract.py):
# sampling only through its `generation_config` field, thinking on/off per request; it answers a
# request for n completions with one (so no `n`), and a seed is global to the server (so no
# `seed`: concurrent requests share one random state); no guidance.
TRANSFORMERS_SERVE_CAPABILITIES = frozenset({"generation_config", "thinking"})


class TransformersServe:
    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.port = free_port()
        self.log = work_dir / "transformers-serve.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def endpoint(self, name: str = "tserve", **changes) -> Endpoint:
        endpoint = Endpoint(
            name=name,
            url=self.url,
            model=str(TINY_HF),  # a server started on a folder serves it under its path
            capabilities=TRANSFORMERS_SERVE_CAPABILITIES,
            concurrency=4,
            timeout_s=60,
            max_retries=1,
        )
        return replace(endpoint, **changes)

    def env(self, name: str = "tserve") -> dict[str, str]:
        """The variables that configure this server as endpoint `name` (for a worker process)."""
        prefix = f"OPENAI_ENDPOINT_{name.upper()}_"
        return {
            "OPENAI_ENDPOINTS": name,
            prefix + "URL": self.url,
            prefix + "MODEL": str(TINY_HF),
            prefix + "CAPABILITIES": ",".join(sorted(TRANSFORMERS_SERVE_CAPABILITIES)),
        }

    def start(self, timeout_s: float = 120) -> TransformersServe:
        command = Path(sys.executable).with_name("transformers")
        if not command.exists():
            raise AssertionError(f"{command} is missing: install the test extra (pip install -e '.[test]')")
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",  # the tiny model gains nothing from more; the suite runs beside it
            "TOKENIZERS_PARALLELISM": "false",
        }
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(command), "serve", str(TINY_HF), "--host", "127.0.0.1", "--port", str(self.port)]
                + ["--device", "cpu", "--log-level", "warning"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"transformers serve exited ({self.process.returncode}):\n{self._tail()}")
            if self._serves_the_model():
                return self
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"transformers serve did not answer within {timeout_s:.0f}s:\n{self._tail()}")

    def _serves_the_model(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=2) as answer:  # noqa: S310 - loopback
                listed = json.load(answer)["data"]
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False
        return any(m.get("id") == str(TINY_HF) for m in listed)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # It finishes a generation in flight before it stops on SIGTERM: kill it after a while.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def transformers_serve(tmp_path_factory):
    server = TransformersServe(tmp_path_factory.mktemp("transformers-serve"))
    try:
        yield server.start()
    finally:
        server.stop()
