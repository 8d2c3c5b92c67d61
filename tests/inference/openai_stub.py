"""A scripted OpenAI-compatible server on a free loopback port, for the error paths a real server
will not take on demand: a refused key, 429 for a while, 500s, a server that never answers,
malformed JSON. `respond(body, number)` decides each answer (number: 1 for the first request);
every request's body and headers are kept, and the most requests in flight at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    chunks: list[dict] = field(default_factory=list)  # streamed as SSE `data:` lines
    body: dict | None = None  # a JSON error body (status != 200)
    raw: bytes | None = None  # sent as is, after the SSE headers
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before answering at all


def text(*pieces: str, finish: str = "stop", reasoning: tuple[str, ...] = (), choice: int = 0) -> Reply:
    """A streamed completion: optional thinking pieces, then the answer's pieces, then usage."""
    chunks = [{"choices": [{"index": choice, "delta": {"role": "assistant"}}]}]
    chunks += [{"choices": [{"index": choice, "delta": {"reasoning_content": p}}]} for p in reasoning]
    chunks += [{"choices": [{"index": choice, "delta": {"content": p}}]} for p in pieces]
    chunks.append({"choices": [{"index": choice, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": len(pieces), "total_tokens": 0}})
    return Reply(chunks=chunks)


def error(status: int, message: str, **headers: str) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "stub"}}, headers=headers)


class Stub:
    def __init__(self, respond: Callable[[dict, int], Reply]):
        self.respond = respond
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._send_json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub._lock:
                    stub.requests.append(body)
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    number = len(stub.requests)
                    stub.in_flight += 1
                    stub.most_in_flight = max(stub.most_in_flight, stub.in_flight)
                try:
                    reply = stub.respond(body, number)
                    time.sleep(reply.delay_s)
                    if reply.status != 200:
                        self._send_json(reply.status, reply.body or {}, reply.headers)
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if reply.raw is not None:
                        self.wfile.write(reply.raw)
                        return
                    for chunk in reply.chunks:
                        chunk = {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "m", **chunk}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): nothing to answer
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                    self.close_connection = True

            def _send_json(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Stub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
