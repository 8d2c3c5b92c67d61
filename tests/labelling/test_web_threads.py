"""The ASGI handler of pages and the API (shaping_web/handlers.py): a request's synchronous
work runs on one of WEB_THREADS threads, each keeping its database connection between
requests; more requests at once than threads wait for one, and every one is answered."""

import asyncio
import threading

import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from shaping_web.handlers import SyncASGIHandler


async def _get(app, path: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"]


@pytest.fixture
def connections_opened(monkeypatch):
    """Threads that opened a database connection, one entry per connection opened."""
    opened = []
    connect = BaseDatabaseWrapper.connect

    def counting(self):
        opened.append(threading.current_thread().name)
        return connect(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "connect", counting)
    return opened


@pytest.mark.django_db(transaction=True)  # the web threads use connections of their own
def test_requests_share_a_few_threads_that_keep_their_database_connections(connections_opened):
    app = SyncASGIHandler(threads=2)

    async def traffic():
        statuses = []
        for _ in range(3):  # bursts of 5 at once, on 2 threads
            statuses += await asyncio.gather(*(_get(app, "/healthz") for _ in range(5)))
        return statuses

    try:
        assert asyncio.run(traffic()) == [200] * 15
    finally:  # the threads' connections go with them (a database the suite drops must have no users)
        app.leases.close_connections()
        closed = [e.submit(lambda: connections["default"].connection is None).result() for e in app.leases._idle]
        for executor in app.leases._idle:
            executor.shutdown()
    assert app.leases._made == 2 and closed == [True, True]
    web = [name for name in connections_opened if name.startswith("web-")]
    assert 1 <= len(web) <= 2, connections_opened  # one connection per thread, not per request
