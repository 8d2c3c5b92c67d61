"""API tokens: created from the CLI or the admin, stored hashed, shown once, revocable."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from labelling.models import ApiToken

PREFIX = "shp_"


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
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
