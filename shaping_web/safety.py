"""Fail closed: DEBUG (tracebacks with settings, the demo's public password) serves this machine only.

Settings refuse DEBUG with a non-loopback host in ALLOWED_HOSTS; `manage.py serve` refuses
DEBUG bound to a non-loopback address; and under any ASGI server, with DEBUG on, a connection
that did not arrive on a loopback address is refused (`LoopbackOnlyInDebug`). Imported by the
settings module: nothing here reads settings at import time.
"""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)

# Django's test client names itself so; nothing resolves it, and only the tests allow it.
_LOCAL_NAMES = {"localhost", "testserver"}


def is_loopback(host: str) -> bool:
    """An address or host name that only reaches this machine (127.0.0.0/8, ::1, localhost).
    An ALLOWED_HOSTS pattern (".example.org", "*") is not."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def debug_hosts_problem(debug: bool, allowed_hosts: list[str]) -> str | None:
    """Why these settings would show DEBUG to other machines, or None."""
    exposed = [h for h in allowed_hosts if not is_loopback(h)]
    if not debug or not exposed:
        return None
    return (
        f"DEBUG is on and ALLOWED_HOSTS allows {', '.join(exposed)}: with DEBUG on the app serves this "
        "machine only (loopback hosts). Set DEBUG=0 (with SECRET_KEY) to serve other hosts."
    )


def debug_bind_problem(debug: bool, host: str) -> str | None:
    """Why binding to `host` would show DEBUG to other machines, or None."""
    if not debug or is_loopback(host):
        return None
    return (
        f"DEBUG is on and the server would listen on {host}: with DEBUG on it listens on loopback only "
        "(--host 127.0.0.1). Set DEBUG=0 (with SECRET_KEY and ALLOWED_HOSTS) to serve other machines."
    )


# Headers a reverse proxy adds to what it forwards (nginx, Caddy, Traefik, cloud balancers).
FORWARDED_HEADERS = {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"}
DEBUG_PROXIED = (
    "DEBUG is on and a request came through a proxy (it carries X-Forwarded-For or Forwarded): with "
    "DEBUG on the app serves this machine only. Set DEBUG=0 (with SECRET_KEY and ALLOWED_HOSTS) behind a proxy."
)


def _forwarded(scope: dict) -> bool:
    return any(name.lower() in FORWARDED_HEADERS for name, _ in scope.get("headers", ()))


class LoopbackOnlyInDebug:
    """ASGI middleware: with DEBUG on, a connection that arrived on an address other than a
    loopback one (the server is bound to 0.0.0.0, say), or a request a proxy forwarded (to a
    loopback address: a proxy on this machine), is refused: 403, or a websocket closed with
    4403. However the server was started (daphne's command line, another ASGI server)."""

    def __init__(self, app):
        self.app = app
        self.warned = False

    async def __call__(self, scope, receive, send):
        from django.conf import settings

        server = scope.get("server") if scope["type"] in ("http", "websocket") else None
        beyond = server and not is_loopback(str(server[0]))
        # A proxy on this machine forwards other machines' requests to a loopback address: the
        # headers it adds say so, and with DEBUG on such a request is refused as well.
        proxied = server and _forwarded(scope)
        if settings.DEBUG and (beyond or proxied):
            if not self.warned:
                self.warned = True
                log.error("%s", debug_bind_problem(True, str(server[0])) if beyond else DEBUG_PROXIED)
            if scope["type"] == "websocket":
                await receive()  # websocket.connect: opened, then closed saying why (as consumers.refuse)
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": 4403})
                return
            body = (
                b"DEBUG is on: this server answers on loopback addresses only.\n"
                if beyond
                else b"DEBUG is on: this server answers this machine only, not requests a proxy forwards.\n"
            )
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def production_problem(debug: bool, secret_key: str, allowed_hosts: list[str]) -> str | None:
    """Why these settings cannot serve production (DEBUG off), or None: no host to answer to
    (every request, health probes included, would be a 400), or a SECRET_KEY an attacker could
    guess (sessions, CSRF tokens and password resets are signed with it). The bar for the key
    is Django's own deploy check's: 50 characters, 5 different ones, not a generated dev key."""
    if debug:
        return None
    if not allowed_hosts:
        return "ALLOWED_HOSTS is empty with DEBUG off: name the hosts the site answers to (e.g. shaping.example.org)"
    if len(secret_key) < 50 or len(set(secret_key)) < 5 or secret_key.startswith("django-insecure"):
        return (
            "SECRET_KEY is too weak for DEBUG off: use at least 50 characters with at least 5 different ones, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    return None
