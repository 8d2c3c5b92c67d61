"""`manage.py seed_demo`: Aria, her rubric, two prompt sets, completions to review, demo users.

The completions are the demo model's own answers (labelling/demo/aria-completions.jsonl, made
by `python -m inference.demo_completions`), so the first page a reviewer opens shows real
text; `--completions FILE` imports another file of groups instead (the tests' hand-written ones).
Safe to run again: what already exists is left as it is.
"""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from labelling.access.demo import DEMO_PASSWORD, DEMO_USERS
from labelling.access.roles import ADMIN, ensure_roles
from labelling.catalogue.importers import ImportFailed, import_path
from labelling.models import Character, PipelineRun

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"


class Command(BaseCommand):
    help = "Seed the demo: character Aria, a rubric, a prompt set, completions to review, demo users."

    def add_arguments(self, parser):
        parser.add_argument(
            "--password",
            help=f"Password for the demo users (default {DEMO_PASSWORD!r}, not in production).",
        )
        parser.add_argument(
            "--completions",
            type=Path,
            default=DEMO_DIR / "aria-completions.jsonl",
            help="the groups to import for review (default: the demo model's answers)",
        )

    @transaction.atomic
    def handle(self, *args, password: str | None, completions: Path, **options):
        if password is None and not settings.ALLOW_DEMO_PASSWORD:
            raise CommandError(
                "the demo's default password is public: it is only for a DEBUG run serving this machine "
                "(ALLOW_DEMO_PASSWORD); pass --password"
            )
        password = password or DEMO_PASSWORD
        groups = ensure_roles()
        User = get_user_model()
        for username, role in DEMO_USERS.items():
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": role == ADMIN})
            if created:
                user.set_password(password)
                user.save()
                user.groups.add(groups[role])
        try:
            if not Character.objects.filter(slug="aria").exists():
                self.stdout.write(f"aria.yaml: {import_path(DEMO_DIR / 'aria.yaml')}")
            if not PipelineRun.objects.filter(
                kind=PipelineRun.Kind.IMPORT, params__source__endswith=completions.name
            ).exists():
                self.stdout.write(f"{completions.name}: {import_path(completions)}")
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS("demo ready; sign in as admin / reviewer / reviewer2"))
