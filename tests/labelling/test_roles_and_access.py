"""Login is required everywhere; reviewers and admins see what their role allows."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from labelling.access.roles import ADMIN, REVIEWER, user_role


def test_anonymous_visitors_are_sent_to_sign_in(client, db):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_health_check_needs_no_login(client, db):
    assert client.get("/healthz").json() == {"ok": True}


def test_a_reviewer_sees_the_dashboard_but_not_the_admin(reviewer_client, demo):
    response = reviewer_client.get("/")
    assert response.status_code == 200
    assert b"Aria" in response.content and b'href="/admin/"' not in response.content
    assert reviewer_client.get("/admin/").status_code == 302  # admin login page


def test_an_admin_reaches_the_admin(admin_client, demo):
    assert admin_client.get("/admin/").status_code == 200
    assert admin_client.get("/admin/labelling/character/").status_code == 200


def test_the_dashboard_refuses_a_post(reviewer_client, db):
    assert reviewer_client.post("/").status_code == 405


def test_create_user_makes_a_user_in_the_role(db, capsys):
    call_command("create_user", "rev1", "--role", "reviewer")
    out = capsys.readouterr().out
    assert "created reviewer 'rev1'" in out and "password: " in out
    user = get_user_model().objects.get(username="rev1")
    assert user_role(user) == REVIEWER and not user.is_staff
    password = out.split("password: ")[1].strip()
    assert user.check_password(password)


def test_create_user_admin_is_staff_with_domain_permissions(db):
    call_command("create_user", "boss", "--role", "admin", "--password", "a-long-password-1")
    user = get_user_model().objects.get(username="boss")
    assert user_role(user) == ADMIN and user.is_staff and not user.is_superuser
    assert user.has_perm("labelling.change_rubric") and user.has_perm("labelling.view_judgment")


def test_create_user_refuses_a_taken_name(db):
    call_command("create_user", "dup", "--role", "reviewer")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_user", "dup", "--role", "reviewer")


def test_a_user_in_no_role_has_no_role(outsider):
    assert user_role(outsider) is None


@pytest.mark.parametrize("password", ["short", "password123"])
def test_create_user_refuses_a_password_the_validators_refuse(db, password):
    with pytest.raises(CommandError, match="--password: This password is"):
        call_command("create_user", "weak", "--role", "reviewer", "--password", password)
    assert not get_user_model().objects.filter(username="weak").exists()
