"""Idempotency keys of runs: a retry with the same key gets the run the first request made.

A key a user sends (the API's Idempotency-Key header, a form's hidden key) is scoped to that
user and to the request: it is stored as a hash of the user and the key (another user's same
key is another run), and the run records a fingerprint of the request it was made for (the
same key with a different request is refused, `IdempotencyConflict`). Keys a service makes
for itself (an evaluation's two sides) are given without a user and stored as they are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from labelling.models import PipelineRun

MAX_LENGTH = 120  # as sent; PipelineRun.idempotency_key holds 120 characters
FINGERPRINT = "request_sha256"  # the run's params key holding the request's fingerprint


class IdempotencyKeyInvalid(ValidationError):
    """A key the run cannot carry (too long): the API answers 422."""


class IdempotencyConflict(ValidationError):
    """The key was used before by this user for another request: the API answers 409."""


def key_check(key: str) -> None:
    if len(key) > MAX_LENGTH:
        raise IdempotencyKeyInvalid(
            {"idempotency_key": f"an idempotency key is at most {MAX_LENGTH} characters (this one has {len(key)})"}
        )


def key_stored(key: str, user=None) -> str:
    """What the run row holds: the key itself, or with a user a hash of the user and the key."""
    key_check(key)
    if user is None:
        return key
    return f"user-{user.pk}:" + hashlib.sha256(key.encode()).hexdigest()


def fingerprint(request: Mapping) -> str:
    """A hash of what a request asked for (slugs, ids, numbers, settings: JSON-able values)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def run_for_key(stored: str, *, request_sha256: str | None = None) -> PipelineRun | None:
    """The run made under a stored key, if any. With a fingerprint (a user's key), a run made
    for another request is a conflict."""
    run = PipelineRun.objects.filter(idempotency_key=stored).first()
    if run is None or request_sha256 is None:
        return run
    if (run.params or {}).get(FINGERPRINT) != request_sha256:
        raise IdempotencyConflict(
            {
                "idempotency_key": f"this key was already used for another request (run #{run.pk}); "
                "send a new key for a new request, or the same request to get that run"
            }
        )
    return run


@dataclass(frozen=True)
class RequestKey:
    """A request's idempotency key as a run holds it (`stored`; None: the request sent none) and,
    for a user's key, the request's fingerprint (a run made under the key for another request is
    a conflict)."""

    stored: str | None = None
    request_sha256: str | None = None

    def run(self) -> PipelineRun | None:
        """The run already made under this key, if any (IdempotencyConflict: made for another
        request). Ask before creating, and again when a create lost a race on the key."""
        return run_for_key(self.stored, request_sha256=self.request_sha256) if self.stored else None

    def params(self) -> dict:
        """What the new run's params record of the request: its fingerprint, if it has one."""
        return {FINGERPRINT: self.request_sha256} if self.request_sha256 else {}


def request_key(key: str | None, user, request: Mapping) -> RequestKey:
    """The key a run-starting service works with: checked and stored as the run row holds it;
    with `user` (the key came from that user) scoped to them and fingerprinted with `request`."""
    if not key:
        return RequestKey()
    return RequestKey(key_stored(key, user), fingerprint(request) if user is not None else None)
