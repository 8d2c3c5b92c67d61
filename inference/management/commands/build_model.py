"""`manage.py build_model`: the same as `python -m inference.build_model` (see there)."""

from django.core.management.base import BaseCommand, CommandError

from inference import build_model


class Command(BaseCommand):
    help = "Build a Qwen3 ONNX model directory (tiny shipped model, 0.6B-shaped benchmark model, or a HF folder)."

    def add_arguments(self, parser):
        parser.add_argument("args", nargs="*", help="options of python -m inference.build_model (--help there)")

    def handle(self, *args, **options):
        if build_model.main(list(args)) != 0:
            raise CommandError("build failed")
