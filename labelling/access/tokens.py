"""API tokens: created from the CLI or the admin, stored hashed, shown once, revocable."""

from __future__ import annotations

import hashlib
import logging
import secrets

from django.db import DatabaseError, transaction

from labelling import clock
from labelling.models import ApiToken

PREFIX = "shp_"


# How often, at most, a token's `last_used_at` is written: a token used many times a second
# costs one write a minute, and a database that takes no writes still serves its reads.
TOUCH_EVERY_S = 60
log = logging.getLogger(__name__)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """The new row and the token itself, which is never stored and cannot be shown again."""
    secret = secrets.token_urlsafe(32)
    token = f"{PREFIX}{secret}"
    row = ApiToken.objects.create(user=user, name=name, prefix=token[:12], digest=_digest(token))
    return row, token


def token_authenticate(token: str) -> ApiToken | None:
    if not token or not token.startswith(PREFIX):
        return None
    row = ApiToken.objects.select_related("user").filter(digest=_digest(token), revoked_at__isnull=True).first()
    if row is None or not row.user.is_active:
        return None
    now = clock.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() >= TOUCH_EVERY_S:
        # A read must not need a write: the stamp is best effort, at most once a minute.
        try:
            with transaction.atomic():
                ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        except DatabaseError as exc:
            log.warning("token %s: its use was not recorded (%s); the request goes on", row.prefix, exc)
    return row


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
