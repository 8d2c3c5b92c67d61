"""Test clients signed in as someone."""

from __future__ import annotations

from django.test import Client


def client_as(user) -> Client:
    """A client signed in as `user` (None: anonymous)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client
