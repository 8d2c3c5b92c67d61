"""The login throttle: past LOGIN_FAILURES_PER_ACCOUNT wrong passwords for one account (or
LOGIN_FAILURES_PER_ADDRESS from one address) in the window, sign-in is refused, the right
password included, with a message that says for how long and a log line; on the login page
and the admin's, counted in the database so every process sees the same failures."""

import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from labelling.models import LoginFailure
from tests.conftest import PASSWORD

LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 8
    settings.LOGIN_FAILURE_WINDOW_S = 600


def sign_in(client: Client, username: str, password: str, *, path: str = LOGIN, address: str = "10.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_past_the_account_limit_even_the_right_password_is_refused_saying_for_how_long(reviewer, caplog):
    client = Client()
    for _ in range(5):
        page = sign_in(client, reviewer.username, "wrong")
        assert page.status_code == 200 and "didn't match" in page.content.decode()
    with caplog.at_level(logging.WARNING, logger="shaping.security"):
        page = sign_in(client, reviewer.username, PASSWORD)
    assert not signed_in(client)
    assert "Too many failed sign-ins for this account: try again in 10 minutes." in page.content.decode()
    assert "didn't match" not in page.content.decode()
    assert any("sign-in refused: 5 failed sign-ins for this account" in r.getMessage() for r in caplog.records)
    assert LoginFailure.objects.filter(username=reviewer.username).count() == 5  # a refused try adds none


def test_the_account_opens_again_when_its_failures_leave_the_window(reviewer):
    client = Client()
    for _ in range(5):
        sign_in(client, reviewer.username, "wrong")
    LoginFailure.objects.update(at=timezone.now() - timedelta(seconds=601))
    sign_in(client, reviewer.username, PASSWORD)
    assert signed_in(client)
    assert not LoginFailure.objects.filter(username=reviewer.username, address="10.0.0.1").exists()


def test_one_address_trying_many_accounts_is_refused_for_every_account(reviewer, admin_user):
    client = Client()
    for i in range(8):
        sign_in(client, f"guess{i}", "wrong", address="10.9.9.9")
    page = sign_in(client, reviewer.username, PASSWORD, address="10.9.9.9")
    assert not signed_in(client)
    assert "Too many failed sign-ins for this address" in page.content.decode()
    sign_in(client, reviewer.username, PASSWORD, address="10.0.0.2")  # another address: its own count
    assert signed_in(client)


def test_the_admin_login_is_throttled_too_and_counts_with_the_login_page(admin_user):
    client = Client()
    for path in ["/admin/login/", LOGIN] * 2 + ["/admin/login/"]:
        sign_in(client, admin_user.username, "wrong", path=path)
    page = sign_in(client, admin_user.username, PASSWORD, path="/admin/login/")
    assert not signed_in(client)
    assert "Too many failed sign-ins for this account" in page.content.decode()


def test_a_success_clears_its_failures_so_typos_do_not_add_up(reviewer):
    client = Client()
    for _ in range(4):
        sign_in(client, reviewer.username, "wrong")
    sign_in(client, reviewer.username, PASSWORD)
    assert signed_in(client)
    client.logout()
    for _ in range(4):
        sign_in(client, reviewer.username, "wrong")
    sign_in(client, reviewer.username, PASSWORD)
    assert signed_in(client)


def test_an_inactive_account_counts_as_a_failure(reviewer):
    get_user_model().objects.filter(pk=reviewer.pk).update(is_active=False)
    sign_in(Client(), reviewer.username, PASSWORD)
    assert LoginFailure.objects.filter(username=reviewer.username).count() == 1
