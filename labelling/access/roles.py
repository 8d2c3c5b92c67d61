"""The two roles, as Django groups: reviewers rate; admins also define, run and export."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction
from django.db.models.signals import m2m_changed
from django.dispatch import receiver

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


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="shaping-staff-follows-role")
def _staff_follows_role(sender, action: str, **kwargs) -> None:
    """Staff status follows the admin role, whichever side of the membership changed (a user's
    groups, a group's users): gaining the role gives it, losing it takes it away (a superuser
    keeps it). The admin site checks the role too, so a lingering flag opens nothing."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    users = get_user_model().objects.filter(is_superuser=False)
    users.filter(is_staff=True).exclude(groups__name=ADMIN).update(is_staff=False)
    users.filter(is_staff=False, groups__name=ADMIN).update(is_staff=True)
