"""`manage.py serve`: everything the app needs, in the foreground, kept up together.

Starts the bundled CPU tritonserver (unless TRITON_URL points at an external one),
the huey consumer and daphne; prints where to go.

With the in-process channel layer (no REDIS_URL), live events can only reach the
browser from inside the web process, so the huey consumer runs as threads of the
daphne process (huey restarts a dead worker thread itself). With Redis, each runs as its
own process, as in production. Either way a child that dies (tritonserver, the huey
consumer, the web server) is logged and started again with a growing backoff
(`shaping_web.supervisor`): a dead background worker never takes the site down. Ctrl-C
or SIGTERM stops everything.

With DEBUG on it refuses to listen on anything but a loopback address (`shaping_web.safety`).
"""

from __future__ import annotations

import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.triton_server import TritonProcess
from inference.versions import served as served_versions
from labelling.access.demo import DEMO_PASSWORD, DEMO_USERS
from shaping_web.safety import debug_bind_problem
from shaping_web.supervisor import Child, Supervisor, TritonChild


class Command(BaseCommand):
    help = "Run the web server, the huey consumer and (unless TRITON_URL is set) the bundled Triton server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-triton", action="store_true", help="Do not start the bundled Triton server.")

    def handle(self, *args, host: str, port: int, no_triton: bool, **options):
        if problem := debug_bind_problem(settings.DEBUG, host):
            raise CommandError(problem)
        children: list[Child] = []
        if settings.TRITON_MANAGED and not no_triton:
            children.append(TritonChild(_triton_server(), prepare=served_versions.repository_sync))
        if not settings.REDIS_URL:
            # The in-process channel layer reaches browsers only from the web process:
            # the huey consumer runs as threads inside it.
            self._serve_in_process(Supervisor(children), host, port)
            return
        manage = [sys.executable, "manage.py"]
        children += [
            Child("huey", [*manage, "run_huey", "--logfile", str(settings.DATA_DIR / "huey.log")]),
            Child("train", [*manage, "run_train_worker"]),
            Child("web", [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "shaping_web.asgi:application"]),
        ]
        self._serve_processes(Supervisor(children), host, port)

    def _serve_processes(self, supervisor: Supervisor, host: str, port: int) -> None:
        def _stop(signum, frame):
            supervisor.request_stop()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        supervisor.start()
        self._announce(host, port)
        try:
            supervisor.run()
        finally:
            supervisor.stop()

    def _announce(self, host: str, port: int) -> None:
        self.stdout.write(self.style.SUCCESS(f"\nShaping is starting at http://{host}:{port}/"))
        if settings.ALLOW_DEMO_PASSWORD:
            users = ", ".join(DEMO_USERS)
            self.stdout.write(f"Demo login: {users} (password {DEMO_PASSWORD!r}). Ctrl-C stops everything.\n")
        self.stdout.flush()

    def _serve_in_process(self, supervisor: Supervisor, host: str, port: int) -> None:
        from channels.routing import get_default_application
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server
        from django.utils.module_loading import autodiscover_modules
        from huey.contrib.djhuey import HUEY

        supervisor.start()
        supervisor.run_in_background()
        autodiscover_modules("tasks")
        from inference.train_queue import TRAIN_HUEY

        consumer = HUEY.create_consumer(workers=settings.HUEY_WORKERS, worker_type="thread")
        consumer.start()  # its signal handlers are replaced by daphne's below
        trainer = TRAIN_HUEY.create_consumer(workers=settings.TRAIN_WORKERS, worker_type="thread")
        trainer.start()
        self._announce(host, port)
        try:
            Server(
                application=get_default_application(),
                endpoints=build_endpoint_description_strings(host=host, port=port),
            ).run()  # until SIGINT / SIGTERM
        finally:
            # A training round is not waited for: its trainer dies with this process and the
            # next start's watchdog resumes the run from its last checkpoint.
            trainer.stop(graceful=False)
            consumer.stop(graceful=True)
            supervisor.stop()


def _triton_server() -> TritonProcess:
    """The bundled server `manage.py triton` runs: every ready generator version side by side."""
    return served_versions.managed_server()
