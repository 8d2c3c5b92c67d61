"""`manage.py build_dataset NAME --kind grpo|grpo_prompts|dpo|kto|sft [filters]`: freeze a version.

python manage.py build_dataset aria --kind dpo --rubric aria-voice --min-human-reviews 1
python manage.py build_dataset aria --compare 1 2
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelling.datasets import formats, storage
from labelling.datasets import selectors as dataset_selectors
from labelling.datasets import services as dataset_services
from labelling.models import DatasetVersion


class Command(BaseCommand):
    help = "Build a numbered, immutable dataset version (or compare two)."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="the dataset's name (a slug); versions are numbered per name")
        parser.add_argument("--kind", choices=sorted(formats.FORMATS), help="the trainer format")
        parser.add_argument("--character")
        parser.add_argument("--rubric", help="rubric slug (its latest version unless --rubric-version)")
        parser.add_argument("--rubric-version", type=int)
        parser.add_argument("--run", type=int, action="append", dest="runs", default=[], help="repeatable")
        parser.add_argument("--min-human-reviews", type=int, default=0)
        parser.add_argument("--generator-version", type=int, metavar="N", help="only completions of model version N")
        parser.add_argument("--include-flagged", action="store_true")
        parser.add_argument("--min-margin", type=float, default=0.1, help="pairs: smallest reward gap")
        parser.add_argument(
            "--held-out",
            type=float,
            default=0.0,
            metavar="SHARE",
            help="keep this share of prompts out (by a hash of the prompt; evaluations use them)",
        )
        parser.add_argument("--after", help="groups created at or after (ISO date)")
        parser.add_argument("--before", help="groups created before (ISO date)")
        parser.add_argument("--compare", nargs=2, type=int, metavar=("OLD", "NEW"), help="compare two versions")

    def handle(self, *args, dataset: str, **o):
        if o["compare"]:
            old, new = (self._version(dataset, n) for n in o["compare"])
            try:
                diff = dataset_selectors.dataset_compare(old, new)
            except storage.DatasetCorrupt as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                json.dumps(
                    {k: (v if isinstance(v, int) else {"count": len(v), "ids": v[:20]}) for k, v in diff.items()},
                    indent=2,
                )
            )
            return
        if not o["kind"]:
            raise CommandError("--kind is required to build")
        filter_ = {
            "character": o["character"],
            "rubric": o["rubric"],
            "rubric_version": o["rubric_version"],
            "runs": o["runs"],
            "min_human_reviews": o["min_human_reviews"],
            "generator_version": o["generator_version"],
            "exclude_flagged": not o["include_flagged"],
            "min_margin": o["min_margin"],
            "held_out": o["held_out"],
            "created_after": o["after"],
            "created_before": o["before"],
        }
        try:
            version = dataset_services.dataset_build(dataset=dataset, kind=o["kind"], filter=filter_)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"{version}: {version.row_count} rows, sha256 {version.sha256[:12]}…, {storage.dataset_path(version)}"
            )
        )
        self.stdout.write(json.dumps(version.stats, indent=2))

    def _version(self, dataset: str, number: int) -> DatasetVersion:
        version = DatasetVersion.objects.filter(dataset=dataset, number=number).first()
        if version is None:
            raise CommandError(f"no version {number} of {dataset!r}")
        return version
