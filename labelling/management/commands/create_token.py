"""`manage.py create_token USERNAME [--name NAME]`: an API token, printed once. `--revoke PREFIX` revokes one."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelling.access import tokens
from labelling.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user (shown once), or revoke one by its prefix."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?")
        parser.add_argument("--name", default="cli", help="what the token is for")
        parser.add_argument("--revoke", metavar="PREFIX", help="revoke the token starting with PREFIX")

    def handle(self, *args, username: str | None, name: str, revoke: str | None, **options):
        if revoke:
            row = ApiToken.objects.filter(prefix=revoke[:12]).first()
            if row is None:
                raise CommandError(f"no token starts with {revoke!r}")
            tokens.token_revoke(token=row)
            self.stdout.write(f"revoked {row}")
            return
        if not username:
            raise CommandError("give a username (or --revoke PREFIX)")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        _, token = tokens.token_create(user=user, name=name)
        self.stdout.write(token)
        self.stderr.write("Keep it now: it is stored hashed and cannot be shown again.")
