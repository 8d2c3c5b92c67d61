"""`manage.py run_train_worker`: the training consumer. It takes only train runs (their own
queue, inference/train_queue.py): run it on the host that should train (a GPU host, against
the shared DATABASE_URL and REDIS_URL); `manage.py serve` runs one beside the huey consumer."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the training consumer: it executes train runs only (the <HUEY name>-train queue)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--workers", type=int, default=settings.TRAIN_WORKERS, help="train runs at once (default: TRAIN_WORKERS)"
        )

    def handle(self, *args, workers: int, **options):
        from inference.train_queue import TRAIN_HUEY

        self.stdout.write(f"training consumer on queue {TRAIN_HUEY.name!r}, {workers} at once")
        self.stdout.flush()
        TRAIN_HUEY.create_consumer(workers=max(1, workers), worker_type="thread").run()
