"""A refusal (Django's ValidationError from a service) as field messages or one line of text:
the one shape the API, the review views and the run forms all answer with."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpResponse


def validation_fields(exc: ValidationError) -> dict[str, str]:
    """A refusal's messages by field ({} when it names no field)."""
    if not hasattr(exc, "error_dict"):
        return {}
    return {k: "; ".join(v) for k, v in exc.message_dict.items()}


def validation_text(exc: ValidationError) -> str:
    """A refusal as one line: "field: message; ...", or its messages when it names no field."""
    return "; ".join(f"{k}: {v}" for k, v in validation_fields(exc).items()) or "; ".join(exc.messages)


def refusal(message: str, status: int) -> HttpResponse:
    """A 4xx with a plain-text reason; review.js shows it above the form."""
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
