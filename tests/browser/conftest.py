"""Browser tests: Debian's chromium driven by Playwright against the real app.

The app runs as a user runs it: `manage.py serve` (daphne with the huey consumer in the
same process, websockets included) on its own SQLite database, migrated and seeded
with the demo, talking to the session's real tritonserver. Tests act only through the
browser, and read the server's database (a file) to check what was stored.
"""

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "shaping-demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveApp:
    def __init__(self, data_dir: Path, triton_url: str):
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = data_dir / "app.sqlite3"
        self.env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "SQLITE_PATH": str(self.db_path),
            "INFERENCE_BACKEND": "triton",
            "TRITON_URL": triton_url,
            "ALLOW_DEMO_PASSWORD": "1",
            "DEBUG": "1",
            "HUEY_NAME": f"browser-{self.port}",
        }
        for name in ("DATABASE_URL", "REDIS_URL"):  # the app under test uses the embedded defaults
            self.env.pop(name, None)
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self) -> "LiveApp":
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("seed_demo")
        log = open(self.data_dir / "serve.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2)  # noqa: S310 - loopback
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        raise AssertionError(f"the app did not start:\n{(self.data_dir / 'serve.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.db_path) as db:
            return db.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def live_app(tmp_path_factory, triton_server):
    app = LiveApp(tmp_path_factory.mktemp("live-app"), triton_server.url).start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def sign_in(browser, live_app):
    """A page signed in as a user. Every page of the test runs under the app's
    Content-Security-Policy: a violation the browser reports fails the test."""
    contexts, violations = [], []

    def on_console(message):
        if "Content Security Policy" in message.text:
            violations.append(f"{message.page.url if message.page else '?'}: {message.text}")

    def open_as(username: str, viewport: tuple[int, int] | None = None):
        size = {"viewport": {"width": viewport[0], "height": viewport[1]}} if viewport else {}
        context = browser.new_context(base_url=live_app.url, **size)
        context.on("console", on_console)
        contexts.append(context)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{live_app.url}/")
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert violations == [], "the Content-Security-Policy blocked something:\n" + "\n".join(violations)
