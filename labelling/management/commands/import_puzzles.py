"""`manage.py import_puzzles FILE --prompt-set SLUG`: Architext rows -> decision prompts."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelling.catalogue.architext import puzzles_import
from labelling.catalogue.importers import ImportFailed


class Command(BaseCommand):
    help = "Import Architext decision puzzles (JSONL) as a prompt set of decision prompts (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--prompt-set", required=True, help="slug of the new prompt set")

    def handle(self, *args, file: Path, prompt_set: str, **options):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: {exc}") from None
        try:
            created = puzzles_import(file.name, text, prompt_set=prompt_set)
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{file.name}: {created.prompts.count()} decision prompts in prompt set {created.slug!r}")
