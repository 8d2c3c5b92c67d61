"""The Triton backend: tritonclient gRPC streaming against the bundled CPU server or
NVIDIA's container (TRITON_URL).

tritonclient's gRPC client allows one active stream at a time, so each thread gets
its own client and keeps one stream open, sending its requests on it one at a time
and reading events until each final response. A caller that gives up (timeout) closes
the stream with `cancel_requests=True`, which also stops the generation on the server.

A generate request that names a version (`GenerateRequest.model_version`) is sent with
Triton's `model_version`; a version the server does not serve is a ModelNotReady naming it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable

import numpy as np

from inference.backends.base import (
    GENERATOR_MODEL,
    JUDGE_MODEL,
    Capabilities,
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
# How long a ready model may take to answer the health check's request.
HEALTH_ANSWER_S = 5.0
TRANSIENT_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")


class TritonBackend:
    name = "triton"
    capabilities = Capabilities()

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 120.0,
        generator_model: str = GENERATOR_MODEL,
        judge_model: str = JUDGE_MODEL,
        default_version: Callable[[], int | None] | None = None,
    ):
        """`default_version` names the generator version of a request that names none (the
        Django side: the current one); without it, Triton answers from its newest version."""
        self.url = url
        self.default_version = default_version
        self.timeout_s = timeout_s
        self.generator_model = generator_model
        self.judge_model = judge_model
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        # tritonclient's stream threads are not daemons: open streams would keep the
        # process from exiting. Close them when the interpreter starts shutting down,
        # before it waits for threads (where concurrent.futures hooks in too).
        _at_thread_shutdown(weakref.WeakMethod(self.close))

    # --- the interface ---------------------------------------------------------------

    def generate(self, request: GenerateRequest, on_delta: OnDelta | None = None) -> list[Completion]:
        request.params.validate()  # refuse a bad request before it travels
        payload = {**request.as_payload(), "stream": on_delta is not None}

        def on_event(event: dict) -> None:
            for index, piece in event.get("pieces", {}).items():
                on_delta(int(index), piece)

        version = request.model_version
        if version is None and self.default_version is not None:
            version = self.default_version()
        final = self._call(self.generator_model, payload, on_event if on_delta else None, version)
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
        problems = [f"not ready: {', '.join(missing)}"] if missing else []
        # A model Triton calls ready must answer too: its worker takes a request (the stats
        # one, through the model's own execute) within HEALTH_ANSWER_S.
        engines = {}
        for name in (n for n, ready in models.items() if ready):
            try:
                engines[name] = self._call(name, {"stats": True}, None, timeout_s=HEALTH_ANSWER_S).get("stats") or {}
            except InferenceError as exc:
                models[name] = False
                problems.append(f"{name} does not answer ({_message(exc)})")
        detail = "; ".join(problems)
        return Health(self.name, self.url, server_ready, models, detail, engines)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # closing a dead channel may fail; nothing to do
                client.close()
        self._local = threading.local()

    # --- one streamed call -------------------------------------------------------------
    #
    # Each thread keeps one client with one open stream and sends its requests on it one
    # at a time (opening a stream per call cost ~14 ms a request, measured). Events of an
    # earlier request that was given up on are recognised by their request id. Any
    # failure closes the stream and the client: the next call starts afresh.

    def _stream(self):
        state = getattr(self._local, "stream", None)
        if state is None:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(self.url)
            events: queue.Queue = queue.Queue()
            with self._lock:
                self._clients.append(client)
            try:
                client.start_stream(callback=lambda result, error: events.put((result, error)))
            except Exception:
                with contextlib.suppress(Exception):
                    client.close()
                raise
            state = self._local.stream = (client, events)
        return state

    def _client(self):
        """A plain client for health checks (no stream)."""
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.grpc as grpcclient

            client = self._local.client = grpcclient.InferenceServerClient(self.url)
            with self._lock:
                self._clients.append(client)
        return client

    def _call(
        self, model: str, payload: dict, on_event, version: int | None = None, timeout_s: float | None = None
    ) -> dict:
        import tritonclient.grpc as grpcclient

        data = grpcclient.InferInput("request", [1], "BYTES")
        data.set_data_from_numpy(np.array([json.dumps(payload).encode()], dtype=np.object_))
        request_id = uuid.uuid4().hex
        try:
            client, events = self._stream()
            client.async_stream_infer(
                model,
                [data],
                model_version="" if version is None else str(version),
                request_id=request_id,
                enable_empty_final_response=True,
            )
            return self._read(model, request_id, events, on_event, version, timeout_s or self.timeout_s)
        except InferenceError as exc:
            if not isinstance(exc, InvalidRequest | JudgeOutputError):
                # Includes a gRPC channel that saw the server go away: it would back off
                # its reconnects for up to minutes; a fresh one uses a restarted server at once.
                self._forget_stream()
            raise
        except Exception as exc:
            # A broken stream reports its cause through the callback: prefer that.
            events = getattr(self._local, "stream", (None, None))[1]
            error = None
            if events is not None:
                with contextlib.suppress(queue.Empty):
                    _, error = events.get(timeout=2)
            self._forget_stream()
            raise _map_error(error or exc, model, version) from exc

    def _read(
        self, model: str, request_id: str, events: queue.Queue, on_event, version: int | None, timeout_s: float
    ) -> dict:
        deadline = time.monotonic() + timeout_s
        last: dict | None = None
        while True:
            try:
                result, error = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BackendUnavailable(f"{model} gave no answer within {timeout_s:.0f}s") from None
            if error is not None:
                raise _map_error(error, model, version)
            response = result.get_response()
            if response.id != request_id:
                continue  # the tail of a request given up on earlier
            event = result.as_numpy("event")
            if event is not None and event.size:
                last = json.loads(event.reshape(-1)[0])
                if on_event and "pieces" in last:
                    on_event(last)
            if response.parameters["triton_final_response"].bool_param:
                if last is None:
                    raise InferenceError(f"{model} ended the stream without an answer")
                return last

    def _forget_stream(self) -> None:
        """Stop this thread's stream (cancelling what runs on it) and drop its client."""
        state = getattr(self._local, "stream", None)
        self._local.stream = None
        if state is not None:
            client, _ = state
            with contextlib.suppress(Exception):
                client.stop_stream(cancel_requests=True)
            with contextlib.suppress(Exception):
                client.close()


def _at_thread_shutdown(method: weakref.WeakMethod) -> None:
    def close() -> None:
        bound = method()
        if bound is not None:
            bound()

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # already shutting down
            register(close)
    else:  # pragma: no cover - other Pythons
        import atexit

        atexit.register(close)


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    return text or type(exc).__name__


def _map_error(exc: BaseException, model: str, version: int | None = None) -> InferenceError:
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
        # Triton 2.51: "Request for unknown model: 'qwen3' version 9 is not found" (never
        # loaded) or "... version 2 is not at ready state" (unloaded, or loading).
        if version is not None and f"version {version} " in lowered:
            return ModelNotReady(f"version {version} of {model} is not loaded ({text})")
        return ModelNotReady(f"{model}: {text}")
    if any(s in status or s in text for s in TRANSIENT_STATUSES) or any(
        m in lowered for m in ("failed to connect", "connection", "no longer in valid state")
    ):
        return BackendUnavailable(f"Triton unreachable for {model}: {text}")
    return InferenceError(f"{model}: {text}")
