"""`manage.py triton`: run the bundled CPU tritonserver in the foreground, on the generated
repository (triton_models/ plus a folder per ready generator version, under DATA_DIR).

Waits until both models are ready, says so, and stops the server cleanly on
Ctrl-C / SIGTERM. Point the app at an external server instead with TRITON_URL.
"""

from __future__ import annotations

import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from inference.triton_server import TritonStartError
from inference.versions import served as served_versions


class Command(BaseCommand):
    help = "Run the bundled CPU Triton server (generator + judge) until stopped."

    def add_arguments(self, parser):
        host, _, port = settings.TRITON_URL.rpartition(":")
        parser.add_argument(
            "--address",
            default="127.0.0.1",
            help="the address gRPC listens on: another host's workers and web processes reach a Triton host on "
            "its own address (or 0.0.0.0); the default serves this machine only",
        )
        parser.add_argument("--grpc-port", type=int, default=int(port or 8001))
        parser.add_argument("--metrics-port", type=int, default=0, help="default: the gRPC port + 1")
        parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the models")
        parser.add_argument(
            "--write-repository",
            action="store_true",
            help="only write the model repository (every ready generator version) and print its path, "
            "for a Triton that runs elsewhere (a GPU container) on the same folder",
        )

    def handle(
        self, *args, address: str, grpc_port: int, metrics_port: int, timeout: float, write_repository: bool, **options
    ):
        try:
            if write_repository:
                self.stdout.write(str(served_versions.repository_sync()))
                return
            server = served_versions.managed_server()
        except DatabaseError as exc:  # the versions to serve are rows: none to read yet
            raise CommandError(f"cannot read the generator versions ({exc}): run `manage.py migrate` first") from None
        server.address, server.grpc_port, server.metrics_port = address, grpc_port, metrics_port or grpc_port + 1
        stopping = False

        def _stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        listening = f"{server.address}:{server.grpc_port}"
        self.stdout.write(f"Starting tritonserver on {listening} (log: {server.work_dir / 'tritonserver.log'})")
        self.stdout.flush()
        try:
            server.start(timeout_s=timeout)
        except TritonStartError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Triton ready on {listening}: models {', '.join(server.models)}"))
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
