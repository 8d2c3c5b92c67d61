"""Shared fixtures: users per role, signed-in clients, the demo content."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from labelling.roles import ADMIN, REVIEWER, ensure_roles

pytest_plugins = ["tests.triton_fixture"]

PASSWORD = "correct-horse-battery"


def _make_user(username: str, role: str | None):
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=role == ADMIN
    )
    if role:
        user.groups.add(ensure_roles()[role])
    return user


@pytest.fixture
def admin_user(db):
    return _make_user("ada", ADMIN)


@pytest.fixture
def reviewer(db):
    return _make_user("rita", REVIEWER)


@pytest.fixture
def outsider(db):
    """Signed in, but in no role."""
    return _make_user("otto", None)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests and costs seconds per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
