"""`manage.py serve`: everything the app needs, in the foreground, stopped together.

Starts the bundled CPU tritonserver (unless TRITON_URL points at an external one),
the huey consumer and daphne; prints where to go. If any of them dies, the others
are stopped and the command exits non-zero, naming the one that died.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labelling.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USERS

STOP_TIMEOUT_S = 20


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None


class Command(BaseCommand):
    help = "Run the web server, the huey consumer and (unless TRITON_URL is set) the bundled Triton server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-triton", action="store_true", help="Do not start the bundled Triton server."
        )

    def handle(self, *args, host: str, port: int, no_triton: bool, **options):
        manage = [sys.executable, "manage.py"]
        children = []
        if settings.TRITON_MANAGED and not no_triton:
            children.append(Child("triton", [*manage, "triton"]))
        children.append(
            Child("huey", [*manage, "run_huey", "--logfile", str(settings.DATA_DIR / "huey.log")])
        )
        children.append(
            Child(
                "web",
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    host,
                    "-p",
                    str(port),
                    "shaping_web.asgi:application",
                ],
            )
        )

        stopping = False

        def _stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        for child in children:
            child.process = subprocess.Popen(child.argv, start_new_session=True)
        self.stdout.write(self.style.SUCCESS(f"\nShaping is starting at http://{host}:{port}/"))
        if settings.ALLOW_DEMO_PASSWORD:
            users = ", ".join(DEMO_USERS)
            self.stdout.write(
                f"Demo login: {users} (password {DEMO_PASSWORD!r}). Ctrl-C stops everything.\n"
            )
        dead = None
        while not stopping and dead is None:
            time.sleep(0.5)
            dead = next((c for c in children if c.process.poll() is not None), None)
        for child in reversed(children):
            _terminate(child.process)
        if dead is not None and not stopping:
            raise CommandError(
                f"{dead.name} exited with code {dead.process.returncode}; stopped the rest"
            )


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
