"""Text generation over a Qwen3 ONNX model directory (an onnxruntime-genai export), with onnxruntime.

The one place that drives the runtime: Triton's model.py files and the in-process
backend both call `BatchingEngine.generate`, so the two backends behave the same.
Free of Django and of tritonclient.

Requests are batched across callers: the engine's batcher (inference/engine/batching.py)
decodes every sequence in flight, of every request, one token per step in one call of
the model, and requests join and leave between steps. Guidance is llguidance's, one
matcher per sequence; sampling takes each step's top-k candidates in one onnxruntime TopK
call and draws in numpy, one random generator per sequence (inference/engine/sampling.py).
"""

from __future__ import annotations

import json
import os
import queue
from collections.abc import Callable
from pathlib import Path

import numpy as np

from inference.engine.batching import Batcher, Job
from inference.engine.cache import ModelSpec
from inference.engine.chat_template import ChatTemplate
from inference.engine.contract import POLL_S, Completion, Limits, OnStep, SamplingParams, checked_prompt
from inference.errors import InvalidRequest


class BatchingEngine:
    """One loaded model, shared by every caller: concurrent `generate` calls are decoded
    together by its batcher (inference/engine/batching.py). Thread-safe."""

    def __init__(self, model_dir: str | Path, threads: int | None = None, limits: Limits | None = None):
        import onnxruntime as ort  # imported here so importing this module stays cheap
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "genai_config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not an onnxruntime-genai model (no genai_config.json)")
        config = json.loads((self.model_dir / "genai_config.json").read_text())["model"]
        self.chat_template = ChatTemplate.from_model_dir(self.model_dir)  # refused before the model loads
        self.context_length = int(config["context_length"])
        # onnxruntime's default thread count left one of two cores idle here (measured:
        # bench/bench_inference.py); use every core unless told otherwise (`open_engine` passes
        # INFERENCE_THREADS).
        threads = threads or os.cpu_count() or 1
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Threads that spin between operators took 2.7x longer per step when the other core
        # was busy (a test run, the web server: measured 177 vs 64 ms per step of the 0.6B
        # shape); onnxruntime-genai's generator does not spin either.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        decoder = config["decoder"]
        self.session = ort.InferenceSession(
            str(self.model_dir / decoder["filename"]), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.eos_ids = {int(t) for t in np.atleast_1d(config["eos_token_id"])}
        self.vocab_size = int(config["vocab_size"])
        self._guidance_tokenizer = None
        self.limits = limits or Limits()
        self.batcher = Batcher(
            self.session,
            _model_spec(self.session, decoder),
            _Streams(self.tokenizer),
            self.eos_ids,
            self.limits,
            context_length=self.context_length,
            vocab=self.vocab_size,
        )

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def generate(
        self,
        *,
        messages: list[dict] | None = None,
        prompt: str | None = None,
        params: SamplingParams,
        on_step: OnStep | None = None,
        is_cancelled: Callable[[], bool] = lambda: False,
        client: str = "",
        priority: str = "",
    ) -> list[Completion]:
        """n completions of one prompt, decoded in the engine's running batch with whatever
        else is in flight. `on_step({index: piece})` is called (in this thread) after each
        decoding step that produced text; `is_cancelled()` is polled while waiting and ends
        every sequence with finish_reason "cancelled". `client` (a run) and `priority`
        ("interactive" for someone waiting at a page) set the order of admission."""
        tokens = checked_prompt(self, messages=messages, prompt=prompt, params=params, max_batch=self.limits.max_batch)
        job = Job(tokens, params, self._matchers(params), client=client, priority=priority, stream=on_step is not None)
        self.batcher.submit(job)
        try:
            while True:
                try:
                    kind, value = job.events.get(timeout=POLL_S)
                except queue.Empty:
                    if is_cancelled():
                        job.cancelled.set()
                    continue
                if kind == "pieces":
                    if on_step:
                        on_step(value)
                elif kind == "done":
                    return value
                else:
                    raise value
        finally:
            # A caller that leaves early (its on_step raised, it was interrupted) takes its
            # sequences out of the batch at the next step instead of leaving them decoding.
            job.cancelled.set()

    def stats(self) -> dict:
        """The batch now: sequences decoding, requests waiting, recent tokens/s."""
        return self.batcher.stats()

    def close(self) -> None:
        """Stop the scheduler thread (which holds the model): requests still waiting fail."""
        self.batcher.close()

    def _matchers(self, params: SamplingParams) -> list:
        """One llguidance matcher per sequence (compiled once, copied), or Nones."""
        if not params.guidance_type:
            return [None] * params.n
        import llguidance

        if self._guidance_tokenizer is None:
            self._guidance_tokenizer = llguidance.LLTokenizer(
                str(self.model_dir / "tokenizer.json"), n_vocab=self.vocab_size, eos_token=sorted(self.eos_ids)
            )
        compile_grammar = {
            "regex": llguidance.LLMatcher.grammar_from_regex,
            "json_schema": llguidance.LLMatcher.grammar_from_json_schema,
            "lark_grammar": llguidance.LLMatcher.grammar_from_lark,
        }[params.guidance_type]
        try:
            grammar = compile_grammar(params.guidance)
            matcher = llguidance.LLMatcher(self._guidance_tokenizer, grammar, log_level=0)
        except Exception as exc:
            raise InvalidRequest(f"guidance: {exc}") from None
        if matcher.is_error():
            raise InvalidRequest(f"guidance: {matcher.get_error()}")
        return [matcher] + [matcher.deep_copy() for _ in range(params.n - 1)]


def _model_spec(session, decoder: dict) -> ModelSpec:
    inputs = {i.name: i for i in session.get_inputs()}
    names = decoder["inputs"]
    layers = int(decoder["num_hidden_layers"])
    past = [names[k] % i for i in range(layers) for k in ("past_key_names", "past_value_names")]
    present = [decoder["outputs"][k] % i for i in range(layers) for k in ("present_key_names", "present_value_names")]
    types = {
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
    }
    return ModelSpec(
        input_ids=names["input_ids"],
        attention_mask=names["attention_mask"],
        logits=decoder["outputs"]["logits"],
        past_names=past,
        present_names=present,
        kv_heads=int(decoder["num_key_value_heads"]),
        head_size=int(decoder["head_size"]),
        kv_dtype=types[inputs[past[0]].type],
        ids_dtype=types[inputs[names["input_ids"]].type],
        mask_dtype=types[inputs[names["attention_mask"]].type],
        position_ids=names.get("position_ids") if names.get("position_ids") in inputs else None,
    )


class _Streams:
    """Incremental detokenising, one stream per sequence (the text of a token can depend on
    the tokens before it: a multi-byte character split over tokens)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def create_stream(self):
        return _Stream(self.tokenizer)


class _Stream:
    def __init__(self, tokenizer):
        from tokenizers.decoders import DecodeStream

        self.tokenizer = tokenizer
        self.stream = DecodeStream(skip_special_tokens=False)

    def decode(self, token: int) -> str:
        return self.stream.step(self.tokenizer, token) or ""
