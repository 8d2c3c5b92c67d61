"""The review page as a browser sees it: the form to post for the group on the page (its
fields as templates/review/queue.html names them, a score chosen for each criterion of each
completion, a client-made submission id) and the CSRF token htmx sends. Standard library only:
the locust scenario and the HTTP-path benchmark both read pages with it."""

from __future__ import annotations

import html
import random
import re
import uuid
from collections import defaultdict

ACTION = re.compile(r'action="/review/(\d+)/submit"')
RADIO = re.compile(r'<input type="radio" name="(score-\d+-[^"]+)" value="(-?\d+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
TEXTAREA = re.compile(r'<textarea [^>]*name="((?:critique|rewrite)-\d+)"[^>]*>(.*?)</textarea>', re.S)
RANK = re.compile(r'<input type="number" name="(rank-\d+)"')
CSRF_HEADER = re.compile(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'")

# What htmx 2 sends with the form's hx-post (the page's <body hx-headers> adds X-CSRFToken).
HTMX_HEADERS = {"HX-Request": "true", "HX-Target": "review-panel", "HX-Trigger": "review-form"}


def csrf_token(page: str) -> str | None:
    """The token the page hands htmx (<body hx-headers>); only full pages carry it."""
    found = CSRF_HEADER.search(page)
    return html.unescape(found.group(1)) if found else None


def review_form(page: str, rng: random.Random | None = None) -> tuple[int, dict[str, str]] | None:
    """(assignment id, the form's fields as the browser posts them), or None when the page
    holds no group (nothing to review)."""
    rng = rng or random.Random()  # noqa: S311 - scores, not secrets
    action = ACTION.search(page)
    if action is None:
        return None
    form = page[action.start() : page.find("</form>", action.start())]
    fields = {name: html.unescape(value) for name, value in HIDDEN.findall(form)}
    fields["submission_id"] = str(uuid.uuid4())  # made by this client, as review.js keeps one per group
    choices = defaultdict(list)
    for name, value in RADIO.findall(form):
        choices[name].append(value)
    for name, values in choices.items():
        fields[name] = rng.choice(values)
    for name in RANK.findall(form):
        fields[name] = ""  # "auto": left empty
    for name, text in TEXTAREA.findall(form):  # an empty critique; the rewrite box holds the answer
        fields[name] = html.unescape(text) if name.startswith("rewrite-") else ""
    return int(action.group(1)), fields
