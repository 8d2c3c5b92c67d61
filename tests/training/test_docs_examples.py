"""The commands docs/training.md shows, run as written on the demo data."""

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import call_command

from labelling.models import GeneratorVersion, PipelineRun

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # the worker's heartbeat thread writes too


def _commands() -> list[list[str]]:
    block = re.search(r"```sh\n(.*?)```", DOC.read_text(), re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("python manage.py ")]


def test_the_training_examples_run_as_written(demo, media, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.INFERENCE_BACKEND = "inprocess"  # the export's check runs here; no tritonserver needed
    settings.DATA_DIR = tmp_path
    commands = _commands()
    assert [c[0] for c in commands] == ["build_dataset", "build_dataset", "train", "train"]
    with django_capture_on_commit_callbacks(execute=False):  # "queued": nobody consumes the queue here
        for command in commands:
            call_command(*command)
    queued, waited = PipelineRun.objects.filter(kind="train").order_by("pk")
    assert queued.status == "queued" and queued.params["method"] == "grpo"
    assert waited.status == "succeeded" and waited.params["training"]["beta"] == 0.2
    version = GeneratorVersion.objects.get(train_run=waited)
    assert (version.status, version.method, version.parent.number) == ("ready", "dpo", 1)
