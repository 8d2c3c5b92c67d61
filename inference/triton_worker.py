"""What Triton's Python-backend models (triton_models/*/1/model.py) run.

The pattern of Triton's vLLM backend: the model is decoupled, `execute()` only
hands each request to a worker thread and returns, and the thread sends the
responses (streamed pieces, then the final answer with the FINAL flag) through
the request's response sender. Cancellation (a client that cancels or goes away)
is polled between decoding steps, and FINAL is sent even then, so the sender is
released and the model can unload.

Every request carries one BYTES input, `request` (a JSON object), and every
response one BYTES output, `event` (a JSON object):
- generator (`qwen3`): request {"messages": [...] | "prompt": "...", "params": {...},
  "stream": true, "stream_interval_ms": 20}; events {"pieces": {"0": "text", ...}} while generating, then
  {"completions": [{index, text, finish_reason, prompt_tokens, completion_tokens}]}.
- judge: request {"rubric": {...}, "messages": [...], "completion": "...", "seed": null};
  one event {"scores": {...}, "rationale": "...", "raw": "..."}, or an error
  "JudgeOutputError: ..." carrying the raw text after a newline.
- either: request {"stats": true}; one event {"stats": {"batch", "queue", "tokens_per_s", ...}}.
Requests may name a "client" (a run) and a "priority" ("interactive"): the engine's batcher
admits interactive requests first, then clients in turn (inference/engine/batching.py).

Each model instance has one engine, and the engine batches every request in flight: the
worker threads only wait for their request's events. `max_batch_sequences`,
`max_step_tokens`, `max_queue` and `prefix_cache_mb` in config.pbtxt set its limits; `max_concurrency`, the
threads, must exceed the batch for requests to queue in the engine's fair order.

Errors are sent as TritonError("<ErrorClass>: message"), which the client maps
back to `inference.errors`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from inference.engine import SamplingParams, limits_from_env, open_engine
from inference.errors import BackendUnavailable, InferenceError, InvalidRequest, JudgeOutputError
from inference.judging import run_judge

log = logging.getLogger("shaping.triton")

MODEL_DIR_ENV = {"generator": "SHAPING_GENERATOR_MODEL_DIR", "judge": "SHAPING_JUDGE_MODEL_DIR"}
MODEL_DIR_FILE = "model_dir"  # in a version folder of a generated repository (inference/versions/repository.py)
# What a relative model_dir is relative to. The shipped repository, triton_models/, sits in it;
# a generated one (under DATA_DIR) does not, so the repository's own place is no guide.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def model_dir_for(args: dict, role: str, params: dict[str, str]) -> Path:
    """The ONNX folder a model version serves, the first of: the file `<version>/model_dir`
    (written by inference/versions/repository.py in a generated repository, one per version),
    the environment variable of the role, the `model_dir` parameter of the config. A relative
    path is relative to the project root (the folder holding `inference/`)."""
    version = str(args.get("model_version", ""))
    version_file = Path(args["model_repository"]) / version / MODEL_DIR_FILE
    if version and version_file.is_file():
        model_dir = version_file.read_text().strip()
        if not model_dir:
            raise ValueError(f"{version_file} is empty")
    else:
        model_dir = os.environ.get(MODEL_DIR_ENV[role]) or params.get("model_dir", "")
    if not model_dir:
        raise ValueError(f"set {MODEL_DIR_ENV[role]} or the model_dir parameter")
    path = Path(model_dir)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return path.resolve()


def _order(payload: dict) -> dict:
    order = {}
    for key in ("client", "priority"):
        value = payload.get(key, "")
        if not isinstance(value, str) or len(value) > 200:
            raise InvalidRequest(f"{key} must be a string of at most 200 characters")
        order[key] = value
    return order


class DecoupledWorker:
    def __init__(self, pb_utils, args: dict, role: str):
        self.pb = pb_utils
        self.role = role
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.version = str(args.get("model_version", ""))
        path = model_dir_for(args, role, params)
        self.engine = open_engine(path, limits=limits_from_env(params))
        # Seconds between streamed events: pieces of consecutive steps are coalesced.
        self.stream_interval_s = float(params.get("stream_interval_ms", "0") or 0) / 1000
        self.pool = ThreadPoolExecutor(
            max_workers=int(params.get("max_concurrency", "64") or 64), thread_name_prefix=role
        )
        message = f"{role} version {self.version} ready: {path}"
        logger = getattr(pb_utils, "Logger", None)  # into Triton's own log, where an operator looks
        if logger is not None:
            logger.log_info(message)
        else:
            log.info(message)

    def submit(self, requests) -> None:
        for request in requests:
            self.pool.submit(self._run, request)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.engine.close()

    # --- one request ------------------------------------------------------------------

    def _run(self, request) -> None:
        sender = request.get_response_sender()
        final = self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            payload = self._payload(request)
            if payload.get("stats"):
                event = {"stats": self.engine.stats()}
            elif self.role == "generator":
                event = self._generate(payload, sender)
            else:
                event = self._judge(payload)
            sender.send(self._response(event), flags=final)
        except InferenceError as exc:
            sender.send(self._error(exc), flags=final)
        except Exception as exc:  # a bug must still answer, never leave the client waiting
            log.exception("%s request failed", self.role)
            sender.send(self._error(exc), flags=final)

    def _payload(self, request) -> dict:
        tensor = self.pb.get_input_tensor_by_name(request, "request")
        if tensor is None:
            raise InvalidRequest("missing input 'request'")
        raw = tensor.as_numpy().reshape(-1)
        if raw.size != 1:
            raise InvalidRequest("input 'request' must hold exactly one JSON object")
        try:
            payload = json.loads(raw[0])
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"input 'request' is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise InvalidRequest("input 'request' must be a JSON object")
        return payload

    def _generate(self, payload: dict, sender) -> dict:
        params = SamplingParams.from_dict(payload.get("params") or {})
        stream = bool(payload.get("stream", True))
        interval_ms = payload.get("stream_interval_ms")
        if interval_ms is not None and (not isinstance(interval_ms, int | float) or not 0 <= interval_ms <= 10_000):
            raise InvalidRequest("stream_interval_ms must be a number of milliseconds from 0 to 10000")
        interval_s = self.stream_interval_s if interval_ms is None else interval_ms / 1000
        pending: dict[int, str] = {}
        last = [time.monotonic()]

        def on_step(pieces: dict[int, str]) -> None:
            for index, piece in pieces.items():
                pending[index] = pending.get(index, "") + piece
            if time.monotonic() - last[0] >= interval_s:
                flush()

        def flush() -> None:
            if pending:
                sender.send(self._response({"pieces": {str(k): v for k, v in pending.items()}}))
                pending.clear()
            last[0] = time.monotonic()

        completions = self.engine.generate(
            messages=payload.get("messages"),
            prompt=payload.get("prompt"),
            params=params,
            on_step=on_step if stream else None,
            is_cancelled=sender.is_cancelled,
            **_order(payload),
        )
        if stream:
            flush()
        return {"completions": [c.as_dict() for c in completions]}

    def _judge(self, payload: dict) -> dict:
        missing = [k for k in ("rubric", "messages", "completion") if k not in payload]
        if missing:
            raise InvalidRequest(f"missing field(s): {', '.join(missing)}")
        result = run_judge(
            self.engine,
            payload["rubric"],
            payload["messages"],
            payload["completion"],
            seed=payload.get("seed"),
            **_order(payload),
        )
        return result.as_dict()

    def _response(self, event: dict):
        data = np.array([json.dumps(event).encode()], dtype=np.object_)
        return self.pb.InferenceResponse(output_tensors=[self.pb.Tensor("event", data)])

    def _error(self, exc: Exception):
        # The client knows the classes of inference.errors: a subclass goes by its base's name
        # (EngineBusy is a BackendUnavailable, which clients retry).
        name = "BackendUnavailable" if isinstance(exc, BackendUnavailable) else type(exc).__name__
        message = f"{name}: {exc}"
        if isinstance(exc, JudgeOutputError):
            message += "\n" + exc.raw
        return self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(message))
