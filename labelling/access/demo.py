"""The demo's users and their public password, and what keeps that password out of production.

`seed_demo` creates the users with DEMO_PASSWORD only where ALLOW_DEMO_PASSWORD is on (a DEBUG
run serving this machine alone). A database seeded so and then served with DEBUG off keeps
those users: there, signing in with the public password is refused (`demo_password_refusal`,
asked by the login forms), and `manage.py check --deploy` names every demo user that still
has it (labelling.E001).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.db import DatabaseError

from labelling.access.roles import ADMIN, REVIEWER

DEMO_USERS = {"admin": ADMIN, "reviewer": REVIEWER, "reviewer2": REVIEWER}
DEMO_PASSWORD = "shaping-demo"  # noqa: S105 - printed to the person who seeded a local demo


def demo_password_refusal(password: str) -> str | None:
    """Why this password may not sign anyone in here, or None."""
    if password == DEMO_PASSWORD and not settings.ALLOW_DEMO_PASSWORD:
        return (
            "This account still has the demo's public password, which signs no one in outside a "
            "local demo. An admin must set a new one: manage.py changepassword USERNAME."
        )
    return None


@checks.register(checks.Tags.security, deploy=True)
def demo_password_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """labelling.E001: a demo user that still signs in with the public password."""
    if settings.ALLOW_DEMO_PASSWORD:
        return []
    try:
        users = list(get_user_model().objects.filter(username__in=DEMO_USERS, is_active=True))
    except DatabaseError:  # not migrated yet: no users to check
        return []
    return [
        checks.Error(
            f"user {user.username!r} still has the demo's public password",
            hint=f"manage.py changepassword {user.username}, or deactivate the account",
            id="labelling.E001",
        )
        for user in users
        if user.check_password(DEMO_PASSWORD)
    ]
