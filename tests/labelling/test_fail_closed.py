"""Production fails closed: DEBUG serves this machine only. Settings refuse DEBUG with a
non-loopback ALLOWED_HOSTS, `serve` refuses to listen beyond loopback with DEBUG on, the ASGI
application refuses connections that arrive on another address, and the demo's public password
is only ever set for a DEBUG run."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError

from shaping_web.asgi import application
from shaping_web.safety import is_loopback

ROOT = Path(__file__).resolve().parents[2]
SECRET = "k" * 60 + "-production-secret-for-the-check"


def manage(*args: str, timeout: int = 60, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a process of its own (its own settings), killed whole if it outlives `timeout`."""
    full_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "REDIS_URL"}}
    full_env.update(env)
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"manage.py {' '.join(args)} was still running after {timeout}s:\n{out}{err}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("[::1]", True),
        ("::1", True),
        ("0.0.0.0", False),  # noqa: S104 - what is refused
        ("::", False),
        ("10.0.0.5", False),
        ("shaping.example.org", False),
        (".example.org", False),
        ("*", False),
    ],
)
def test_loopback_is_only_what_reaches_this_machine_alone(host, loopback):
    assert is_loopback(host) is loopback


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("hosts", ["shaping.example.org", "127.0.0.1,*", "10.0.0.5"])
def test_debug_with_a_non_loopback_allowed_host_refuses_to_start(hosts):
    result = manage("check", DEBUG="1", ALLOWED_HOSTS=hosts)
    assert result.returncode != 0
    assert "DEBUG is on and ALLOWED_HOSTS allows" in result.stderr and "Set DEBUG=0" in result.stderr


def test_debug_with_loopback_hosts_starts():
    result = manage("check", DEBUG="1", ALLOWED_HOSTS="127.0.0.1,localhost,[::1]")
    assert result.returncode == 0, result.stderr


def test_the_demo_password_cannot_be_allowed_outside_debug():
    result = manage("check", DEBUG="0", SECRET_KEY=SECRET, ALLOWED_HOSTS="shaping.example.org", ALLOW_DEMO_PASSWORD="1")
    assert result.returncode != 0 and "ALLOW_DEMO_PASSWORD=1 with DEBUG off" in result.stderr


# --- serve -----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])  # noqa: S104 - what is refused
def test_serve_refuses_to_listen_beyond_loopback_with_debug_on(host):
    result = manage("serve", "--host", host, "--port", str(free_port()), "--no-triton", DEBUG="1")
    assert result.returncode != 0
    assert f"the server would listen on {host}" in result.stderr and "Shaping is starting" not in result.stdout


# --- the ASGI application, however it is served ------------------------------------------


def asgi(scope: dict, *events: dict) -> list[dict]:
    """What the application answers to one connection (its scope and the events it is sent)."""

    async def go():
        communicator = ApplicationCommunicator(application, scope)
        for event in events:
            await communicator.send_input(event)
        answers = [await communicator.receive_output(timeout=10)]
        while answers[-1]["type"] in ("http.response.start", "websocket.accept") or answers[-1].get("more_body"):
            answers.append(await communicator.receive_output(timeout=10))
        await communicator.wait(timeout=10)
        return answers

    return async_to_sync(go)()


def http_scope(server: tuple[str, int]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("10.9.8.7", 51000),
        "server": server,
    }


REQUEST = {"type": "http.request", "body": b"", "more_body": False}


@pytest.mark.django_db(transaction=True)
def test_with_debug_on_a_connection_to_a_non_loopback_address_is_refused(settings):
    settings.DEBUG = True
    start, body = asgi(http_scope(("10.0.0.5", 8000)), REQUEST)
    assert start["status"] == 403 and b"loopback" in body["body"]
    closed = asgi(
        {**http_scope(("10.0.0.5", 8000)), "type": "websocket", "path": "/ws/live/"}, {"type": "websocket.connect"}
    )
    assert closed == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 4403}]


@pytest.mark.django_db(transaction=True)
def test_with_debug_on_a_loopback_connection_is_served(settings):
    settings.DEBUG = True
    start, body = asgi(http_scope(("127.0.0.1", 8000)), REQUEST)
    assert start["status"] == 200 and body["body"] == b'{"ok": true}'


@pytest.mark.django_db(transaction=True)
def test_with_debug_off_any_address_is_served(settings):
    settings.DEBUG = False
    start, _ = asgi(http_scope(("10.0.0.5", 8000)), REQUEST)
    assert start["status"] == 200


# --- the demo's password ------------------------------------------------------------------


def test_seed_demo_refuses_the_public_password_where_it_is_not_allowed(db, settings):
    settings.ALLOW_DEMO_PASSWORD = False
    with pytest.raises(CommandError, match="pass --password"):
        call_command("seed_demo", verbosity=0)
    assert not get_user_model().objects.exists()


def test_seed_demo_takes_another_password_anywhere(db, settings):
    settings.ALLOW_DEMO_PASSWORD = False
    call_command("seed_demo", "--password", "a-long-private-password-7", verbosity=0)
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("a-long-private-password-7") and not admin.check_password("shaping-demo")


def test_a_database_seeded_for_the_demo_signs_no_one_in_with_its_password_outside_the_demo(db, settings, client):
    call_command("seed_demo", verbosity=0)  # the tests allow the demo password, as a DEBUG run does
    settings.ALLOW_DEMO_PASSWORD = False  # then served with DEBUG off
    page = client.post("/accounts/login/", {"username": "admin", "password": "shaping-demo"})
    assert page.status_code == 200 and "_auth_user_id" not in client.session
    assert "still has the demo&#x27;s public password" in page.content.decode()
    # Its admin page, the same.
    admin = client.post("/admin/login/", {"username": "admin", "password": "shaping-demo", "next": "/admin/"})
    assert admin.status_code == 200 and "_auth_user_id" not in client.session
    # check --deploy names every demo user that still has it; a new password clears it.
    with pytest.raises(SystemCheckError, match=r"(?s)labelling\.E001.*'admin'.*'reviewer'.*'reviewer2'"):
        call_command("check", deploy=True, fail_level="ERROR")
    for user in get_user_model().objects.all():
        user.set_password("a-long-private-password-7")
        user.save()
    call_command("check", deploy=True, fail_level="ERROR", tags=["security"])
    assert (
        client.post("/accounts/login/", {"username": "admin", "password": "a-long-private-password-7"}).status_code
        == 302
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET_KEY": SECRET}, "ALLOWED_HOSTS is empty with DEBUG off"),
        ({"SECRET_KEY": "x", "ALLOWED_HOSTS": "shaping.example.org"}, "SECRET_KEY is too weak"),
        ({"SECRET_KEY": "ab" * 40, "ALLOWED_HOSTS": "shaping.example.org"}, "SECRET_KEY is too weak"),
        ({"SECRET_KEY": "django-insecure-" + "q1w2e3r4t5" * 5, "ALLOWED_HOSTS": "a.example.org"}, "too weak"),
    ],
)
def test_production_refuses_to_start_without_hosts_or_with_a_guessable_key(env, message):
    result = manage("check", DEBUG="0", **env)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-1000:]


# --- bodies refused from their headers ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path", "length", "status", "says"),
    [
        ("GET", "/healthz", "20000000", 400, b"a GET request takes no body"),
        ("GET", "/api/runs", "5", 400, b'"detail": "a GET request takes no body here"'),
        ("POST", "/api/runs", "999999999", 413, b"over 1000 bytes"),
        ("POST", "/api/runs", "12abc", 400, b"not a number"),
    ],
)
def test_a_body_no_operation_could_take_is_refused_before_it_is_read(settings, method, path, length, status, says):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = {**http_scope(("127.0.0.1", 8000)), "method": method, "path": path, "raw_path": path.encode()}
    scope["headers"] = [*scope["headers"], (b"content-length", length.encode())]
    start, body = asgi(scope)  # no body sent at all: the answer comes from the headers
    assert start["status"] == status and says in body["body"], body


@pytest.mark.django_db(transaction=True)
def test_a_body_sent_without_a_length_is_refused_once_it_passes_the_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = {**http_scope(("127.0.0.1", 8000)), "method": "POST", "path": "/api/runs", "raw_path": b"/api/runs"}
    scope["headers"] = [*scope["headers"], (b"transfer-encoding", b"chunked")]
    piece = {"type": "http.request", "body": b"[" * 400, "more_body": True}
    start, body = asgi(scope, piece, piece, piece)  # 1,200 bytes and more to come: not waited for
    assert start["status"] == 413 and b'"detail": "the request body is over 1000 bytes' in body["body"], body
    start, body = asgi({**scope, "method": "GET"})  # and a GET that announces one at all
    assert start["status"] == 400 and b"a GET request takes no body here" in body["body"], body


@pytest.mark.django_db(transaction=True)
def test_a_body_within_the_limit_on_a_method_that_takes_one_goes_through(settings):
    scope = {**http_scope(("127.0.0.1", 8000)), "method": "POST", "path": "/api/runs", "raw_path": b"/api/runs"}
    scope["headers"] = [*scope["headers"], (b"content-length", b"2")]
    start, _ = asgi(scope, {"type": "http.request", "body": b"{}", "more_body": False})
    assert start["status"] == 401  # read, and answered by the API (no token)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("header", [b"x-forwarded-for", b"Forwarded", b"x-real-ip"])
def test_with_debug_on_a_request_a_proxy_forwarded_to_loopback_is_refused(settings, header):
    settings.DEBUG = True
    scope = http_scope(("127.0.0.1", 8000))
    scope["headers"] = [*scope["headers"], (header, b"203.0.113.9")]
    start, body = asgi(scope, REQUEST)
    assert start["status"] == 403 and b"not requests a proxy forwards" in body["body"]
    socket = {**scope, "type": "websocket", "path": "/ws/live/"}
    assert asgi(socket, {"type": "websocket.connect"}) == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 4403},
    ]
    settings.DEBUG = False  # behind a proxy in production: served
    start, _ = asgi(scope, REQUEST)
    assert start["status"] == 200
