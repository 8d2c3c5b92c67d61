"""Strict readers for untrusted text: JSON (or a value YAML made) that is finite and shallow,
and whole numbers written in ASCII digits.

Python's own readers are lenient where that hurts a service: `json.loads` takes `NaN`,
`Infinity` and `1e999` (the database's JSON check then fails, or a filter compares with
NaN), and raises RecursionError, not ValueError, on `[` nested a hundred thousand deep;
`str.isdigit()` is true for `²` (which `int` refuses) and `int("١")` is 1. Each reader here
refuses with a ValueError that says what was wrong, so a caller's one `except ValueError`
turns any of them into the clear refusal it already gives for text that is not JSON.
"""

from __future__ import annotations

import json
import math
import re

# Deeper than any value the app reads (a rubric's rule, a filter, a chat's messages: a few
# levels), far below Python's recursion limit.
MAX_DEPTH = 64

# Up to 18 digits: every such number fits a database's 64-bit integer (a longer one would
# overflow it, and `int` refuses over 4300 digits).
_ASCII_WHOLE = re.compile(r"[0-9]{1,18}")


class NotStrictJson(ValueError):
    """Text or a value the strict reader refuses; the message says why."""


def _no_constants(name: str):
    raise NotStrictJson(f"{name} is not a number JSON allows")


def json_loads(text: str | bytes) -> object:
    """`json.loads`, refusing NaN and infinities and nesting deeper than MAX_DEPTH."""
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise NotStrictJson(f"nested deeper than {MAX_DEPTH} levels") from None
    return checked(value)


def checked(value: object) -> object:
    """`value` itself, if it nests no deeper than MAX_DEPTH and holds no NaN or infinity
    (walked without recursion); else NotStrictJson."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise NotStrictJson(f"{item} is not a number JSON allows")
        if isinstance(item, dict | list | tuple):
            if depth > MAX_DEPTH:
                raise NotStrictJson(f"nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item  # YAML keys may be floats
            stack.extend((child, depth + 1) for child in children)
    return value


def whole_number(text: str) -> int | None:
    """The number `text` writes in at most 18 ASCII digits (no sign, no spaces), else None."""
    return int(text) if _ASCII_WHOLE.fullmatch(text) else None
