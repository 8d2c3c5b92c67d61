"""A refusal (Django's ValidationError from a service) as field messages or one line of text:
the one shape the API, the review views and the run forms all answer with; text that holds the
NUL character, which no request or import may bring in (and which a model's output has replaced
before it is stored); and a backend's error made fit for reviewers (no internal addresses)."""

from __future__ import annotations

import re
from typing import TypeVar

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


# PostgreSQL stores no NUL in text, and a lookup with one fails there (a 500) where SQLite finds
# nothing: the API (a 422), the pages (shaping_web.middleware: a 400) and the importers (a
# problem on the line) take it nowhere, the same on both databases.
NUL = "\x00"
NUL_REFUSED = "text cannot hold the NUL character (\\u0000)"


def nul_path(value: object) -> tuple | None:
    """Where the first NUL is in a string, or in the keys and values of nested dicts and lists:
    the keys and indexes leading to it (() for the value itself), None when there is none."""
    if isinstance(value, str):
        return () if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return (key,)
            if (inner := nul_path(item)) is not None:
                return (key, *inner)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (inner := nul_path(item)) is not None:
                return (index, *inner)
    return None


def holds_nul(value: object) -> bool:
    return nul_path(value) is not None


REPLACEMENT = "\ufffd"
T = TypeVar("T")


def nul_replaced(value: T) -> T:
    """A backend's output made storable: each NUL in a string, or in the keys and values of
    nested dicts and lists (a JSONField's value: jsonb refuses \\u0000 too), becomes U+FFFD, the
    replacement character; anything else comes back as it is.

    A model can emit NUL (a byte-level tokenizer decodes to any byte, an OpenAI-compatible
    server passes on what it got), and a completion is kept, never refused: PostgreSQL would
    fail the write where SQLite stores it, losing the text as a failed item. The services that
    store model output (`labelling.records.services`, a run's errors, a trained
    version's failure) pass it through here, so both databases hold the same text."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {nul_replaced(key): nul_replaced(item) for key, item in value.items()}
    if isinstance(value, list):
        return [nul_replaced(item) for item in value]
    if isinstance(value, tuple):
        return tuple(nul_replaced(item) for item in value)
    return value


# Where things live inside the deployment, each replaced whole.
_ADDRESS = re.compile(
    "|".join(
        (
            r"[a-zA-Z][a-zA-Z0-9+.-]*://\S*[^\s.,;:)'\"]",  # a URL: grpc://, http:// (not its closing punctuation)
            r"\b(?:ipv4|ipv6|unix|dns):\S*[^\s.,;:)'\"]",  # a gRPC target: ipv4:10.0.0.5:8001
            r"\[[0-9a-fA-F:.]+(?:%[\w.-]+)?\](?::\d{1,5}\b)?",  # [IPv6], [IPv6%zone], with a port
            # A bare IPv6 address (and zone): with "::", or five groups or more (not a time, 12:30:45).
            r"(?<![\w:])[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4})*::(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?"
            r"(?:%[\w.-]+)?(?![\w:])",
            r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){4,7}[0-9a-fA-F]{1,4}(?:%[\w.-]+)?(?![\w:])",
            # A name only an internal resolver knows: cluster DNS, .internal, .local, .lan.
            r"\b[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.(?:svc(?:\.cluster\.local)?|cluster\.local|internal|local|lan)\b(?::\d{1,5}\b)?",
            r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b",  # an IPv4 address, with its port
            r"\b[a-zA-Z0-9.-]*[a-zA-Z][a-zA-Z0-9.-]*:\d{1,5}(?!\.?\w)",  # host:port (not a tag: qwen3:0.6b)
            r"(?<![\w.~/-])/[^\s'\",;)]*[^\s'\",;):.]",  # an absolute path (not its closing punctuation)
            r"(?<![\w.~/-])\.{1,2}/[^\s'\",;)]*[^\s'\",;):.]",  # a relative one: ./data, ../models
            # A relative path to a model or data file: models/qwen3/1/model.onnx
            r"(?<![\w.~/-])[\w.-]+(?:/[\w.-]+)+\.(?:onnx|data|json|jsonl|gguf|safetensors|bin|sqlite3|log)\b",
        )
    )
)


def without_addresses(text: str) -> str:
    """A backend's message with every internal address in it replaced by "[address]"."""
    return _ADDRESS.sub("[address]", text or "")
