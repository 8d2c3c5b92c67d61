"""`manage.py serve`: everything the app needs, in the foreground, stopped together.

Starts the bundled CPU tritonserver (unless TRITON_URL points at an external one),
the huey consumer and daphne; prints where to go.

With the in-process channel layer (no REDIS_URL), live events can only reach the
browser from inside the web process, so the huey consumer runs as threads of the
daphne process. With Redis, each runs as its own process, as in production; if any
of them dies, the others are stopped and the command exits non-zero, naming it.
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
        parser.add_argument("--no-triton", action="store_true", help="Do not start the bundled Triton server.")

    def handle(self, *args, host: str, port: int, no_triton: bool, **options):
        manage = [sys.executable, "manage.py"]
        triton = [Child("triton", [*manage, "triton"])] if settings.TRITON_MANAGED and not no_triton else []
        if not settings.REDIS_URL:
            # The in-process channel layer reaches browsers only from the web process:
            # the huey consumer runs as threads inside it.
            self._serve_in_process(triton, host, port)
            return
        children = [
            *triton,
            Child("huey", [*manage, "run_huey", "--logfile", str(settings.DATA_DIR / "huey.log")]),
            Child("web", [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "shaping_web.asgi:application"]),
        ]
        self._serve_processes(children, host, port)

    def _serve_processes(self, children: list[Child], host: str, port: int) -> None:
        stopping = False

        def _stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        for child in children:
            child.process = subprocess.Popen(child.argv, start_new_session=True)
        self._announce(host, port)
        dead = None
        while not stopping and dead is None:
            time.sleep(0.5)
            dead = next((c for c in children if c.process.poll() is not None), None)
        for child in reversed(children):
            _terminate(child.process)
        if dead is not None and not stopping:
            raise CommandError(f"{dead.name} exited with code {dead.process.returncode}; stopped the rest")

    def _announce(self, host: str, port: int) -> None:
        self.stdout.write(self.style.SUCCESS(f"\nShaping is starting at http://{host}:{port}/"))
        if settings.ALLOW_DEMO_PASSWORD:
            users = ", ".join(DEMO_USERS)
            self.stdout.write(f"Demo login: {users} (password {DEMO_PASSWORD!r}). Ctrl-C stops everything.\n")
        self.stdout.flush()

    def _serve_in_process(self, children: list[Child], host: str, port: int) -> None:
        from channels.routing import get_default_application
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server
        from django.utils.module_loading import autodiscover_modules
        from huey.contrib.djhuey import HUEY

        for child in children:
            child.process = subprocess.Popen(child.argv, start_new_session=True)
        autodiscover_modules("tasks")
        consumer = HUEY.create_consumer(workers=settings.HUEY_WORKERS, worker_type="thread")
        consumer.start()  # its signal handlers are replaced by daphne's below
        self._announce(host, port)
        try:
            Server(
                application=get_default_application(),
                endpoints=build_endpoint_description_strings(host=host, port=port),
            ).run()  # until SIGINT / SIGTERM
        finally:
            consumer.stop(graceful=True)
            for child in reversed(children):
                _terminate(child.process)


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
