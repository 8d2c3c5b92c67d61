"""Text generation over an ONNX decoder folder (an onnxruntime-genai export): one contract,
three runtimes, and the factory that picks one for a folder.

    contract.py       the `Engine` protocol every runtime satisfies; the request, sampling,
                      completion, limits; the prompt's checks, each token's bookkeeping
    cpu.py            the batching engine on onnxruntime (CPU exports; Triton's models run it)
    batching.py       its scheduler: requests join and leave one running batch
    cache.py          its caches: the batch's keys and values, recent prompts' prefixes
    fair_queue.py     the waiting line, fair between clients (the paged runtime's too)
    sampling.py       next-token choice: guidance mask, temperature, top-k, top-p, per-sequence seeds
    chat_template.py  each model folder's own chat template, rendered as transformers renders it
    static.py         onnxruntime-genai's generator, for GPU exports without paged attention
    paged.py          onnxruntime-genai's continuous-batching engine, for paged-attention GPU exports

The runtimes import `contract` (and their own helpers), never this front door, and read no
environment variable: the factory here reads INFERENCE_THREADS and the batcher's limits and
passes them in. Free of Django and of tritonclient.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from inference.engine.chat_template import ChatTemplate, ChatTemplateError, check_messages
from inference.engine.contract import (
    GUIDANCE_TYPES,
    MAX_N,
    Completion,
    Engine,
    EngineBusy,
    Limits,
    OnStep,
    SamplingParams,
    apply_stop,
    checked_prompt,
    prompt_text,
)
from inference.engine.cpu import BatchingEngine

__all__ = [
    "GUIDANCE_TYPES",
    "MAX_N",
    "ChatTemplate",
    "ChatTemplateError",
    "BatchingEngine",
    "Completion",
    "Engine",
    "EngineBusy",
    "Limits",
    "OnStep",
    "SamplingParams",
    "apply_stop",
    "check_messages",
    "checked_prompt",
    "limits_from_env",
    "open_engine",
    "prompt_text",
]


def open_engine(model_dir: str | Path, *, limits: Limits | None = None):
    """The engine for a model folder: the `BatchingEngine` for a CPU export, and
    onnxruntime-genai's own runtime for one that names an accelerator's execution provider in
    its genai_config.json: its continuous-batching engine for a paged-attention build
    (`paged.py`), else one static batch per request (`static.py`)."""
    model_dir = Path(model_dir)
    config_path = model_dir / "genai_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} is not an onnxruntime-genai model (no genai_config.json)")
    config = json.loads(config_path.read_text())
    from inference.engine.paged import PagedEngine, is_paged_export  # imported only when asked for

    if is_paged_export(config):
        return PagedEngine(model_dir, limits=limits)
    session_options = config["model"]["decoder"].get("session_options", {})
    if session_options.get("provider_options"):
        from inference.engine.static import StaticEngine

        return StaticEngine(model_dir, threads=threads_from_env())
    return BatchingEngine(model_dir, threads=threads_from_env(), limits=limits or limits_from_env())


def threads_from_env() -> int | None:
    """INFERENCE_THREADS (onnxruntime threads per model); None: every core."""
    raw = os.environ.get("INFERENCE_THREADS") or ""
    return int(raw) if raw else None


LIMIT_SETTINGS = (  # (environment variable, config.pbtxt parameter, Limits field, least value)
    ("INFERENCE_MAX_BATCH", "max_batch_sequences", "max_batch", 1),
    ("INFERENCE_MAX_STEP_TOKENS", "max_step_tokens", "max_step_tokens", 1),
    ("INFERENCE_MAX_QUEUE", "max_queue", "max_queue", 1),
    ("INFERENCE_PREFIX_CACHE_MB", "prefix_cache_mb", "prefix_cache_mb", 0),
)


def limits_from_env(params: dict[str, str] | None = None) -> Limits:
    """The batcher's limits: Triton's config.pbtxt parameters where given (`params`), else
    INFERENCE_MAX_BATCH, INFERENCE_MAX_STEP_TOKENS, INFERENCE_MAX_QUEUE and
    INFERENCE_PREFIX_CACHE_MB, else the defaults."""
    values = {}
    for env, param, name, least in LIMIT_SETTINGS:
        where, raw = param, (params or {}).get(param, "")
        if raw in (None, ""):
            where, raw = env, os.environ.get(env, "")
        if raw in (None, ""):
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{where} must be an integer, not {raw!r}") from None
        if value < least:
            raise ValueError(f"{where} must be at least {least}")
        values[name] = value
    return replace(Limits(), **values)
