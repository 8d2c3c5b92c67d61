"""`manage.py create_user NAME --role reviewer|admin`: a user in one of the two roles."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from labelling.access.roles import ADMIN, ROLES, ensure_roles


class Command(BaseCommand):
    help = "Create a user with a role. Prints a generated password unless --password is given."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, required=True)
        parser.add_argument("--password", help="Defaults to a random one, printed once.")
        parser.add_argument("--email", default="")

    @transaction.atomic
    def handle(self, *args, username: str, role: str, password: str | None, email: str, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} already exists")
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        try:  # the same validators as the admin's password form (AUTH_PASSWORD_VALIDATORS)
            validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            raise CommandError(f"--password: {' '.join(exc.messages)}") from None
        user = User.objects.create_user(username=username, email=email, password=password, is_staff=role == ADMIN)
        user.groups.add(ensure_roles()[role])
        self.stdout.write(self.style.SUCCESS(f"created {role} {username!r}"))
        if generated:
            self.stdout.write(f"password: {password}")
