"""The ASGI handler for the app's pages and API: Django's, with the synchronous middleware
chain run in one hop on a fixed set of worker threads that keep their database connections.

Every view of this app is synchronous. Django's own ASGI handler builds the middleware chain
for async: each middleware that can run either way (nearly all) then runs its
process_request / process_response through a hop of its own to a thread (16 hops per request
here, each a wake-up of another thread that waits for the GIL when a huey worker or the
event loop holds it), and each request gets a new thread, so a new database connection
(persistent connections cannot help: the thread that opened one is gone after its request).
Here the chain is built synchronously, as under WSGI, and a request borrows one of
`WEB_THREADS` threads for all its synchronous work (the request_started signal, the chain,
closing the response and request_finished): three hops, and each thread keeps its connection
for `CONN_MAX_AGE`, as under a threaded WSGI server. At most `WEB_THREADS` requests run at
once; more wait for a thread in arrival order.
"""

from __future__ import annotations

import asyncio
import json as _json
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections


class ThreadLeases:
    """Single-thread executors lent one request at a time. Not bound to an event loop: a
    waiter is woken on its own loop."""

    def __init__(self, size: int):
        self.size = size
        self._idle: deque[ThreadPoolExecutor] = deque()
        self._made = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def borrow(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.popleft()
        if self._made < self.size:
            self._made += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"web-{self._made}")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over just as it was cancelled
                self.give_back(waiter.result())
            raise

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(self._hand_over, waiter, executor)
                return
        self._idle.append(executor)

    def close_connections(self) -> None:
        """Close the database connections the idle threads keep, each on its own thread (a
        connection belongs to the thread that opened it); a thread that serves again opens a
        new one. For a database about to be dropped (the test suite's, at its end), which
        PostgreSQL refuses while a connection is open ("being accessed by other users")."""
        for executor in list(self._idle):
            executor.submit(connections.close_all).result()

    def _hand_over(self, waiter: asyncio.Future, executor: ThreadPoolExecutor) -> None:
        if waiter.done():  # cancelled meanwhile: the next waiter, or idle
            self.give_back(executor)
        else:
            waiter.set_result(executor)


class SyncASGIHandler(ASGIHandler):
    """Django's ASGI handler (request parsing, disconnects, streaming, signals) around the
    synchronous middleware chain, on `threads` worker threads."""

    def __init__(self, threads: int):
        self.leases = ThreadLeases(threads)
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)  # as WSGI builds it: no hop between middleware

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if refused := body_refusal(scope):
            # Before a web thread is borrowed and before a byte of the body is read.
            await _answer(send, *refused, json=scope["path"].startswith("/api/"))
            return
        executor = await self.leases.borrow()
        try:
            # Every thread-sensitive call of this request (signals, the chain, closing the
            # response) runs on the borrowed thread, which keeps its database connection.
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        except BodyTooLarge as exc:  # raised while the body was read: nothing was answered yet
            await _answer(send, 413, str(exc), json=scope["path"].startswith("/api/"))
        finally:
            self.leases.give_back(executor)

    async def read_body(self, receive):
        """Django's, with the body counted as it arrives: one sent without a length (chunked)
        is refused past DATA_UPLOAD_MAX_MEMORY_SIZE, where Django would spool all of it and
        then read it whole into memory (its own limit reads only Content-Length)."""
        limit, seen = settings.DATA_UPLOAD_MAX_MEMORY_SIZE, 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if limit is not None and seen > limit:
                raise BodyTooLarge(_too_large())
            return message

        return await super().read_body(counted)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


# Methods whose operations here take no request body.
_BODILESS = {"GET", "HEAD", "OPTIONS", "DELETE"}


class BodyTooLarge(Exception):
    """A body sent without a length grew past DATA_UPLOAD_MAX_MEMORY_SIZE while it was read."""


def _too_large() -> str:
    return f"the request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)"


def body_refusal(scope: dict) -> tuple[int, str] | None:
    """A request refused from its headers alone: a body on a method that takes none (400), or a
    declared length past DATA_UPLOAD_MAX_MEMORY_SIZE (413). Otherwise a client could hold a web
    thread while it sends megabytes no operation reads. (A body sent without a length, chunked,
    is counted as it is read and refused past the same limit: `SyncASGIHandler.read_body`.)"""
    length, chunked = None, False
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"transfer-encoding":
            chunked = True
    if length is None and chunked and scope.get("method") in _BODILESS:
        return 400, f"a {scope['method']} request takes no body here"
    if length is None or length == 0:
        return None
    if length < 0:
        return 400, "the Content-Length header is not a number"
    if scope.get("method") in _BODILESS:
        return 400, f"a {scope['method']} request takes no body here"
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return 413, _too_large()
    return None


async def _answer(send, status: int, message: str, *, json: bool) -> None:
    body = _json.dumps({"detail": message, "errors": {}}).encode() if json else message.encode() + b"\n"
    kind = b"application/json" if json else b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
