"""The two roles, as Django groups: reviewers rate; admins also define, run and export."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction

REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (REVIEWER, ADMIN)

# Admins manage everything in the domain and the users; reviewers get no model
# permissions at all: they act only through the review views.
_ADMIN_APPS = ("labelling", "auth")


@transaction.atomic
def ensure_roles() -> dict[str, Group]:
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    groups[ADMIN].permissions.set(Permission.objects.filter(content_type__app_label__in=_ADMIN_APPS))
    return groups


def user_role(user: AbstractBaseUser) -> str | None:
    """The user's role, looked up once per user object (one per request)."""
    if not user.is_authenticated:
        return None
    if not hasattr(user, "_shaping_role"):
        names = set() if user.is_superuser else set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._shaping_role = ADMIN if user.is_superuser or ADMIN in names else REVIEWER if REVIEWER in names else None
    return user._shaping_role


def is_admin(user: AbstractBaseUser) -> bool:
    return user_role(user) == ADMIN
