"""`manage.py triton`: run the bundled CPU tritonserver on triton_models/ in the foreground.

Waits until both models are ready, says so, and stops the server cleanly on
Ctrl-C / SIGTERM. Point the app at an external server instead with TRITON_URL.
"""

from __future__ import annotations

import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.triton_server import TritonProcess, TritonStartError


class Command(BaseCommand):
    help = "Run the bundled CPU Triton server (generator + judge) until stopped."

    def add_arguments(self, parser):
        host, _, port = settings.TRITON_URL.rpartition(":")
        parser.add_argument("--grpc-port", type=int, default=int(port or 8001))
        parser.add_argument("--metrics-port", type=int, default=0, help="default: the gRPC port + 1")
        parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the models")

    def handle(self, *args, grpc_port: int, metrics_port: int, timeout: float, **options):
        server = TritonProcess(
            work_dir=settings.DATA_DIR / "triton",
            grpc_port=grpc_port,
            metrics_port=metrics_port or grpc_port + 1,
            generator_dir=settings.GENERATOR_MODEL_DIR,
            judge_dir=settings.JUDGE_MODEL_DIR,
        )
        stopping = False

        def _stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        self.stdout.write(f"Starting tritonserver on {server.url} (log: {server.work_dir / 'tritonserver.log'})")
        self.stdout.flush()
        try:
            server.start(timeout_s=timeout)
        except TritonStartError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Triton ready on {server.url}: models {', '.join(server.models)}"))
        self.stdout.flush()
        try:
            while not stopping:
                if not server.alive():
                    raise CommandError(
                        f"tritonserver exited with code {server.process.returncode}:\n{server.log_tail()}"
                    )
                time.sleep(0.5)
        finally:
            server.stop()
        self.stdout.write("Triton stopped.")
