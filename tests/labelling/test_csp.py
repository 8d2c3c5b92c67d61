"""A Content-Security-Policy on every response, behind escaping: scripts only from the site's own
files. The pages keep working under it (tests/browser checks no violation is reported); here,
every persona's responses carry it, and no template relies on what it forbids."""

import re
from pathlib import Path

import pytest
from django.test import Client

from labelling.access import tokens
from tests.clients import client_as

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self' 'wasm-unsafe-eval'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    # Sockets to the hosts the site serves only (the test settings: 127.0.0.1 and localhost;
    # [::1] is not a valid CSP source, 'self' covers it).
    "connect-src": "'self' ws://127.0.0.1:* wss://127.0.0.1:* ws://localhost:* wss://localhost:*",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def policy(response) -> dict[str, str]:
    header = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


@pytest.mark.parametrize(
    ("persona", "path", "status"),
    [
        (None, "/accounts/login/", 200),
        (None, "/", 302),
        (None, "/healthz", 200),
        ("outsider", "/", 200),
        ("outsider", "/review/", 403),
        ("reviewer", "/", 200),
        ("reviewer", "/review/", 200),
        ("reviewer", "/stats/", 200),
        ("reviewer", "/runs/new", 403),
        ("admin_user", "/runs/new", 200),
        ("admin_user", "/models/", 200),
        ("admin_user", "/admin/", 200),
        ("admin_user", "/admin/labelling/character/", 200),
        (None, "/api/docs", 200),
        (None, "/static/css/app.css", 200),
    ],
)
def test_every_response_carries_the_policy(request, demo, persona, path, status):
    user = request.getfixturevalue(persona) if persona else None
    response = client_as(user).get(path)
    assert response.status_code == status
    assert policy(response) == DIRECTIVES


def test_htmx_fragments_and_api_answers_carry_it_too(reviewer, admin_user, demo):
    client = client_as(reviewer)
    client.get("/review/")
    fragment = client.post("/review/undo", headers={"HX-Request": "true"})  # nothing to undo: a 409 fragment
    assert fragment.status_code == 409 and policy(fragment) == DIRECTIVES
    token = tokens.token_create(user=admin_user, name="t")[1]
    answer = Client().get("/api/characters", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and policy(answer) == DIRECTIVES


def test_the_api_docs_load_their_scripts_from_this_site(client, db):
    html = client.get("/api/docs").content.decode()
    sources = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
    assert sources and all(src.startswith("/static/") for src in sources)


def test_no_template_has_an_inline_script_or_event_handler():
    """What script-src 'self' blocks: a <script> without src, on*= attributes, javascript: URLs."""
    found = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"javascript:"):
            found += [f"{path.relative_to(TEMPLATES)}: {m.group()}" for m in re.finditer(pattern, text)]
    assert found == []


@pytest.mark.parametrize(
    ("hosts", "sources"),
    [
        (["shaping.example.org"], ["ws://shaping.example.org:*", "wss://shaping.example.org:*"]),
        ([".example.org", "[::1]"], ["ws://*.example.org:*", "wss://*.example.org:*"]),
        (["*"], ["ws:", "wss:"]),  # a site that serves any host can name none
    ],
)
def test_sockets_may_go_only_to_the_hosts_the_site_serves(hosts, sources):
    from shaping_web.settings import socket_sources

    assert socket_sources(hosts) == sources
