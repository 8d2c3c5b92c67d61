"""The login throttle: failed sign-ins counted per account and per address in a sliding
window; past either limit, sign-in is refused (the right password included) with a message
that says for how long, and a log line.

Every sign-in goes through it: the login page and the admin's take `ThrottledLoginForm` /
`ThrottledAdminLoginForm`, which ask `refusal()` before checking a password; Django's
`user_login_failed` signal records each failure, whoever called `authenticate`, and
`user_logged_in` clears the account's failures from that address. The rows live in the
database, so every web process and host counts the same failures.

Settings: LOGIN_FAILURES_PER_ACCOUNT (10), LOGIN_FAILURES_PER_ADDRESS (50),
LOGIN_FAILURE_WINDOW_S (900).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest

from labelling import clock
from labelling.access.demo import demo_password_refusal
from labelling.models import LoginFailure

log = logging.getLogger("shaping.security")


def address_of(request: HttpRequest | None) -> str:
    return (request.META.get("REMOTE_ADDR") or "unknown")[:45] if request is not None else "unknown"


def refusal(username: str, address: str) -> str | None:
    """Why a sign-in as `username` from `address` is refused now, or None if it may try."""
    since = clock.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_S)
    recent = LoginFailure.objects.filter(at__gte=since)
    for who, rows, limit in (
        ("this account", recent.filter(username=username), settings.LOGIN_FAILURES_PER_ACCOUNT),
        ("this address", recent.filter(address=address), settings.LOGIN_FAILURES_PER_ADDRESS),
    ):
        times = list(rows.order_by("-at").values_list("at", flat=True)[:limit])
        if len(times) >= limit:
            # Open again once the oldest of the last `limit` failures leaves the window.
            wait_s = (times[-1] - since).total_seconds()
            minutes = max(1, math.ceil(wait_s / 60))
            log.warning(
                "sign-in refused: %d failed sign-ins for %s (%r from %s) in %d s",
                len(times),
                who,
                username,
                address,
                settings.LOGIN_FAILURE_WINDOW_S,
            )
            return f"Too many failed sign-ins for {who}: try again in {minutes} minute{'s' if minutes != 1 else ''}."
    return None


class ThrottledMixin:
    """Refuses before the password is checked when the throttle says so."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "%(reason)s",
    }

    throttled = ""  # the refusal, for the page to show in place of "did not match"

    def clean(self):
        username = (self.data.get("username") or "")[:150]
        if reason := refusal(username, address_of(self.request)):
            self.throttled = reason
            raise ValidationError(self.error_messages["throttled"], code="throttled", params={"reason": reason})
        cleaned = super().clean()
        # Only a right password reaches here: the demo's public one is refused outside a local demo.
        if reason := demo_password_refusal(self.data.get("password") or ""):
            self.throttled = reason
            log.warning("sign-in refused: %r still has the demo's public password", username)
            raise ValidationError(self.error_messages["throttled"], code="throttled", params={"reason": reason})
        return cleaned


class ThrottledLoginForm(ThrottledMixin, AuthenticationForm):
    pass


class ThrottledAdminLoginForm(ThrottledMixin, AdminAuthenticationForm):
    pass


@receiver(user_login_failed, dispatch_uid="shaping-login-failed")
def _failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    username = str(credentials.get("username") or "")[:150]
    address = address_of(request)
    now = clock.now()
    LoginFailure.objects.filter(at__lt=now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_S)).delete()
    LoginFailure.objects.create(username=username, address=address, at=now)
    log.info("sign-in failed for %r from %s", username, address)


@receiver(user_logged_in, dispatch_uid="shaping-logged-in")
def _succeeded(sender, request: HttpRequest | None, user, **kwargs) -> None:
    LoginFailure.objects.filter(username=user.get_username(), address=address_of(request)).delete()
