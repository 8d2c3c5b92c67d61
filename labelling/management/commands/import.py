"""`manage.py import FILE...`: characters, rubrics, prompt sets and completion groups."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelling.catalogue.importers import ImportFailed, import_path


class Command(BaseCommand):
    help = "Import characters, rubrics, prompt sets and completion groups from JSONL, YAML or JSON (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--prompt-set", help="JSONL lines without 'kind' are prompts of this prompt set (slug).")

    def handle(self, *args, files: list[Path], prompt_set: str | None, **options):
        for path in files:
            try:
                summary = import_path(path, default_prompt_set=prompt_set)
            except ImportFailed as exc:
                raise CommandError(f"{path}: {exc}") from exc
            self.stdout.write(self.style.SUCCESS(f"{path}: {summary}"))
