"""`manage.py train`: train a new generator version from a dataset version (a train run)."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelling.catalogue import selectors as catalogue_selectors
from labelling.datasets import selectors as dataset_selectors
from labelling.models import DatasetVersion, PipelineRun
from labelling.versions.training import selectors as training_selectors
from labelling.versions.training import services as training_services


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--set {text!r}: expected KEY=VALUE (e.g. beta=0.04)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a bare word: a string (loss_type=dapo)


class Command(BaseCommand):
    help = (
        "Train a new version of the generator on a dataset version (GRPO on grpo_prompts, DPO on dpo, "
        "SFT on sft). Queued for the huey consumer unless --wait."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, metavar="NAME@N", help="the dataset version, e.g. aria@3")
        parser.add_argument("--method", required=True, choices=sorted(training_services.METHOD_KINDS))
        parser.add_argument("--steps", type=int, help="optimizer steps (default: the method's)")
        parser.add_argument("--lora", action="store_true", help="train LoRA adapters, merged before export")
        parser.add_argument("--from-version", type=int, metavar="V", help="train from version V (default: current)")
        parser.add_argument("--rubric", help="GRPO: reward with this rubric (latest version) instead of the dataset's")
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="a training setting, e.g. beta=0.04"
        )
        parser.add_argument("--wait", action="store_true", help="train here, in this process, instead of queueing")

    def handle(self, *args, **o):
        dataset = self._dataset(o["dataset"])
        params = dict(_setting(s) for s in o["set"])
        if o["steps"] is not None:
            params["steps"] = o["steps"]
        if o["lora"]:
            params["lora"] = True
        rubric = None
        if o["rubric"]:
            rubric = catalogue_selectors.rubric_latest(o["rubric"])
            if rubric is None:
                raise CommandError(f"--rubric: no rubric {o['rubric']!r}")
        try:
            run, _ = training_services.train_start(
                dataset_version=dataset,
                method=o["method"],
                params=params,
                from_version=o["from_version"],
                rubric=rubric,
                enqueue=not o["wait"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        p = run.params
        self.stdout.write(
            f"run #{run.pk}: trains v{p['version']} from v{p['from_version']} on {p['dataset']} "
            f"({p['method']}, {p['training']['steps']} steps)"
        )
        if not o["wait"]:
            self.stdout.write(self.style.SUCCESS(f"run #{run.pk} queued (train)"))
            return
        from inference.versions import train_runs

        train_runs.execute(run.pk)
        run.refresh_from_db()
        version = training_selectors.train_run_version(run)
        curve = training_selectors.training_curve(run.pk)
        if curve:
            first, last = curve[0], curve[-1]
            self.stdout.write(
                f"step {first['step']}: reward {first['reward_mean']}, loss {first['loss']}; "
                f"step {last['step']}: reward {last['reward_mean']}, loss {last['loss']}"
            )
        self.stdout.write(f"run #{run.pk}: {run.status}; version {version.number} is {version.status}")
        if run.status != PipelineRun.Status.SUCCEEDED:
            raise CommandError(f"run #{run.pk} ended {run.status}: {version.error or run.errors[-1:]}")

    def _dataset(self, text: str) -> DatasetVersion:
        try:
            return dataset_selectors.dataset_version_named(text)
        except ValidationError as exc:
            raise CommandError(f"--dataset: {' '.join(exc.messages)}") from None
