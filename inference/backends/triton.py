"""The Triton backend: tritonclient gRPC streaming against the bundled CPU server or
NVIDIA's container (TRITON_URL).

tritonclient's gRPC client allows one active stream at a time, so each thread gets
its own client. Every call opens a stream, sends one request, reads events until
the final response, and closes the stream with `cancel_requests=True`: a caller
that gives up (timeout, cancel) also stops the generation on the server.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid

import numpy as np

from inference.backends.base import (
    GENERATOR_MODEL,
    JUDGE_MODEL,
    GenerateRequest,
    Health,
    JudgeRequest,
    OnDelta,
)
from inference.engine import Completion
from inference.errors import (
    BackendUnavailable,
    InferenceError,
    InvalidRequest,
    JudgeOutputError,
    ModelNotReady,
)
from inference.judging import JudgeResult

NOT_READY_MARKERS = ("unknown model", "is not found", "not ready", "is not healthy", "unavailable model")
TRANSIENT_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")


class TritonBackend:
    name = "triton"

    def __init__(self, url: str, *, timeout_s: float = 120.0, generator_model: str = GENERATOR_MODEL,
                 judge_model: str = JUDGE_MODEL):
        self.url = url
        self.timeout_s = timeout_s
        self.generator_model = generator_model
        self.judge_model = judge_model
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()

    # --- the interface ---------------------------------------------------------------

    def generate(self, request: GenerateRequest, on_delta: OnDelta | None = None) -> list[Completion]:
        request.params.validate()  # refuse a bad request before it travels
        payload = {**request.as_payload(), "stream": on_delta is not None}

        def on_event(event: dict) -> None:
            for index, piece in event.get("pieces", {}).items():
                on_delta(int(index), piece)

        final = self._call(self.generator_model, payload, on_event if on_delta else None)
        try:
            return [Completion(**c) for c in final["completions"]]
        except (KeyError, TypeError) as exc:
            raise InferenceError(f"{self.generator_model} answered without completions: {final!r:.200}") from exc

    def judge(self, request: JudgeRequest) -> JudgeResult:
        final = self._call(self.judge_model, request.as_payload(), None)
        try:
            return JudgeResult(scores=final["scores"], rationale=final.get("rationale", ""), raw=final.get("raw", ""))
        except (KeyError, TypeError) as exc:
            raise InferenceError(f"{self.judge_model} answered without scores: {final!r:.200}") from exc

    def health(self) -> Health:
        models = {self.generator_model: False, self.judge_model: False}
        try:
            client = self._client()
            server_ready = client.is_server_ready(client_timeout=5)
            for name in models:
                models[name] = client.is_model_ready(name, client_timeout=5)
        except Exception as exc:
            return Health(self.name, self.url, False, models, f"cannot reach Triton at {self.url}: {_message(exc)}")
        missing = [name for name, ready in models.items() if not ready]
        detail = f"not ready: {', '.join(missing)}" if missing else ""
        return Health(self.name, self.url, server_ready, models, detail)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # closing a dead channel may fail; nothing to do
                client.close()
        self._local = threading.local()

    # --- one streamed call -------------------------------------------------------------

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(self.url)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _call(self, model: str, payload: dict, on_event) -> dict:
        import tritonclient.grpc as grpcclient

        events: queue.Queue = queue.Queue()
        client = self._client()
        data = grpcclient.InferInput("request", [1], "BYTES")
        data.set_data_from_numpy(np.array([json.dumps(payload).encode()], dtype=np.object_))
        try:
            client.start_stream(callback=lambda result, error: events.put((result, error)),
                                stream_timeout=self.timeout_s)
        except Exception as exc:
            self._forget_client()
            raise _map_error(exc, model) from exc
        try:
            client.async_stream_infer(model, [data], request_id=uuid.uuid4().hex, enable_empty_final_response=True)
            return self._read(model, events, on_event)
        except (BackendUnavailable, ModelNotReady):
            # A gRPC channel that saw the server go away backs off its reconnects for up
            # to minutes: the next call gets a fresh channel, so a restarted server is
            # used at once.
            self._forget_client()
            raise
        except InferenceError:
            raise
        except Exception as exc:
            # A broken stream reports its cause through the callback: prefer that.
            self._forget_client()
            try:
                _, error = events.get(timeout=2)
            except queue.Empty:
                error = None
            raise _map_error(error or exc, model) from exc
        finally:
            try:
                client.stop_stream(cancel_requests=True)
            except Exception:
                self._forget_client()

    def _read(self, model: str, events: queue.Queue, on_event) -> dict:
        deadline = time.monotonic() + self.timeout_s
        last: dict | None = None
        while True:
            try:
                result, error = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BackendUnavailable(f"{model} gave no answer within {self.timeout_s:.0f}s") from None
            if error is not None:
                raise _map_error(error, model)
            event = result.as_numpy("event")
            if event is not None and event.size:
                last = json.loads(event.reshape(-1)[0])
                if on_event and "pieces" in last:
                    on_event(last)
            if result.get_response().parameters["triton_final_response"].bool_param:
                if last is None:
                    raise InferenceError(f"{model} ended the stream without an answer")
                return last

    def _forget_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    return text or type(exc).__name__


def _map_error(exc: BaseException, model: str) -> InferenceError:
    """tritonclient's exceptions, and the model's own "<Class>: message" errors, as ours."""
    text = _message(exc)
    status = str(getattr(exc, "status", lambda: "")() or "")
    for cls in (InvalidRequest, JudgeOutputError, ModelNotReady, BackendUnavailable):
        prefix = f"{cls.__name__}: "
        if prefix in text:
            body = text.split(prefix, 1)[1]
            if cls is JudgeOutputError:
                message, _, raw = body.partition("\n")
                return JudgeOutputError(message, raw)
            return cls(body)
    lowered = text.lower()
    if any(marker in lowered for marker in NOT_READY_MARKERS):
        return ModelNotReady(f"{model}: {text}")
    if (any(s in status or s in text for s in TRANSIENT_STATUSES)
            or any(m in lowered for m in ("failed to connect", "connection", "no longer in valid state"))):
        return BackendUnavailable(f"Triton unreachable for {model}: {text}")
    return InferenceError(f"{model}: {text}")
