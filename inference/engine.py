"""Text generation with onnxruntime-genai over a Qwen3 ONNX model directory.

The one place that drives the runtime: Triton's model.py files and the in-process
backend both call `Engine.generate`, so the two backends behave the same.
Free of Django and of tritonclient.

A GRPO group (n completions of one prompt) runs as one static batch of n
sequences in a single generator: onnxruntime-genai's continuous-batching engine
needs paged attention on CUDA, and a static batch is what the CPU can do.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from inference.errors import InvalidRequest

GUIDANCE_TYPES = ("regex", "json_schema", "lark_grammar")
MAX_N = 16
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
EMPTY_THINK = "<think>\n\n</think>\n\n"

OnStep = Callable[[dict[int, str]], None]  # {sequence index: new text} after each decoding step


@dataclass
class SamplingParams:
    """What one request asks of the generator. Qwen3's recommended non-thinking defaults."""

    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    seed: int | None = None
    n: int = 1
    stop: list[str] = field(default_factory=list)
    enable_thinking: bool = False
    guidance_type: str | None = None
    guidance: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> SamplingParams:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidRequest(f"unknown sampling parameter(s): {', '.join(sorted(unknown))}")
        try:
            params = cls(**data)
        except TypeError as exc:
            raise InvalidRequest(str(exc)) from None
        params.validate()
        return params

    def validate(self) -> None:
        checks = [
            (isinstance(self.max_tokens, int) and self.max_tokens >= 1, "max_tokens must be an integer >= 1"),
            (isinstance(self.n, int) and 1 <= self.n <= MAX_N, f"n must be an integer from 1 to {MAX_N}"),
            (_number(self.temperature) and self.temperature >= 0, "temperature must be a number >= 0"),
            (_number(self.top_p) and 0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (isinstance(self.top_k, int) and self.top_k >= 0, "top_k must be an integer >= 0"),
            (self.seed is None or isinstance(self.seed, int), "seed must be an integer"),
            (
                isinstance(self.stop, list) and all(isinstance(s, str) and s for s in self.stop),
                "stop must be a list of non-empty strings",
            ),
            ((self.guidance_type is None) == (self.guidance is None), "guidance_type and guidance go together"),
            (
                self.guidance_type in (None, *GUIDANCE_TYPES),
                f"guidance_type must be one of {', '.join(GUIDANCE_TYPES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidRequest(message)
        if self.guidance_type == "regex":
            try:
                re.compile(self.guidance)
            except re.error as exc:
                raise InvalidRequest(f"guidance: invalid regex: {exc}") from None
        if self.guidance_type == "json_schema":
            try:
                json.loads(self.guidance)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"guidance: invalid JSON schema: {exc}") from None


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Completion:
    index: int
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string), "length", "cancelled"
    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


def render_chat(messages: list[dict], *, enable_thinking: bool = False, add_generation_prompt: bool = True) -> str:
    """Qwen3's chat template (ChatML) in Python, so every backend renders it the same.

    As Qwen3's own template does, earlier assistant turns keep only their answer (the
    thinking is dropped), and with thinking off the generation prompt carries an
    empty think block so the model answers directly.
    """
    check_messages(messages)
    parts = []
    for message in messages:
        content = message["content"]
        if message["role"] == "assistant" and "</think>" in content:
            content = content.rsplit("</think>", 1)[1].lstrip("\n")
        parts.append(f"{IM_START}{message['role']}\n{content}{IM_END}\n")
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n" + ("" if enable_thinking else EMPTY_THINK))
    return "".join(parts)


def check_messages(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {role, content}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InvalidRequest(f"messages[{i}] must have a string content")
        if message.get("role") not in ("system", "user", "assistant"):
            raise InvalidRequest(f"messages[{i}].role must be system, user or assistant")


class Engine:
    """One loaded model. Thread-safe: each call makes its own generator."""

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        import onnxruntime_genai as og  # imported here so importing this module stays cheap

        self.og = og
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "genai_config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not an onnxruntime-genai model (no genai_config.json)")
        config = json.loads((self.model_dir / "genai_config.json").read_text())
        self.context_length = int(config["model"]["context_length"])
        og_config = og.Config(str(self.model_dir))
        # onnxruntime's default thread count left one of two cores idle here (measured:
        # bench/bench_inference.py); use every core unless INFERENCE_THREADS says otherwise.
        threads = threads or int(os.environ.get("INFERENCE_THREADS") or 0) or os.cpu_count() or 1
        og_config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        self.threads = threads
        self.model = og.Model(og_config)
        self.tokenizer = og.Tokenizer(self.model)
        self.eos_ids = {int(t) for t in np.atleast_1d(self.tokenizer.eos_token_ids)}

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text), dtype=np.int32)

    def prompt_text(self, *, messages: list[dict] | None, prompt: str | None, enable_thinking: bool) -> str:
        if (messages is None) == (prompt is None):
            raise InvalidRequest("give exactly one of messages or prompt")
        if prompt is not None:
            if not isinstance(prompt, str) or not prompt:
                raise InvalidRequest("prompt must be a non-empty string")
            return prompt
        return render_chat(messages, enable_thinking=enable_thinking)

    def generate(
        self,
        *,
        messages: list[dict] | None = None,
        prompt: str | None = None,
        params: SamplingParams,
        on_step: OnStep | None = None,
        is_cancelled: Callable[[], bool] = lambda: False,
    ) -> list[Completion]:
        """n completions of one prompt, generated as one batch. `on_step({index: piece})` is
        called after each decoding step that produced text; `is_cancelled()` is polled
        before each step and ends every sequence with finish_reason "cancelled"."""
        params.validate()
        tokens = self.encode(self.prompt_text(messages=messages, prompt=prompt, enable_thinking=params.enable_thinking))
        room = self.context_length - len(tokens)
        if params.max_tokens > room:
            raise InvalidRequest(
                f"max_tokens {params.max_tokens} does not fit: the prompt is {len(tokens)} tokens "
                f"and the context is {self.context_length}"
            )
        if params.guidance_type and params.n > 1:
            # onnxruntime-genai 0.18 fails a guided batch as soon as one sequence's grammar has
            # finished while another's has not ("compute_mask() called after stop"), so each
            # guided sequence decodes on a generator of its own (seeded seed + its index), the
            # generators stepped in turn.
            lanes = [
                self._generator(tokens, replace(params, n=1, seed=None if params.seed is None else params.seed + i))
                for i in range(params.n)
            ]
        else:
            lanes = [self._generator(tokens, params)]
        return self._decode_loop(lanes, len(tokens), params, on_step, is_cancelled)

    def _generator(self, tokens: np.ndarray, params: SamplingParams):
        og = self.og
        gp = og.GeneratorParams(self.model)
        options = {
            "batch_size": params.n,
            "max_length": len(tokens) + params.max_tokens,
            "do_sample": params.temperature > 0,
            "temperature": max(params.temperature, 1e-5),
            "top_p": params.top_p,
            "top_k": params.top_k,
        }
        if params.seed is not None:
            options["random_seed"] = params.seed
        gp.set_search_options(**options)
        if params.guidance_type:
            try:
                gp.set_guidance(params.guidance_type, params.guidance)
            except Exception as exc:  # llguidance refuses what it cannot compile
                raise InvalidRequest(f"guidance: {exc}") from None
        generator = og.Generator(self.model, gp)
        try:
            generator.append_tokens(np.tile(tokens, (params.n, 1)))
        except Exception as exc:
            raise InvalidRequest(f"guidance: {exc}") from None
        return generator

    def _decode_loop(self, lanes: list, prompt_tokens: int, params: SamplingParams, on_step, is_cancelled):
        """Decode every sequence to its end. `lanes` are generators sharing the n sequences in
        order (one generator of n, or n generators of one); each takes a step while one of its
        sequences is unfinished."""
        n = params.n
        rows = n // len(lanes)
        streams = [self.tokenizer.create_stream() for _ in range(n)]
        texts = [""] * n
        counts = [0] * n
        finish: list[str | None] = [None] * n
        while not all(finish):
            if is_cancelled():
                finish = [f or "cancelled" for f in finish]
                break
            pieces = {}
            for lane, generator in enumerate(lanes):
                mine = range(lane * rows, (lane + 1) * rows)
                if all(finish[i] for i in mine):
                    continue
                if generator.is_done():
                    for i in mine:
                        finish[i] = finish[i] or "length"
                    continue
                generator.generate_next_token()
                next_tokens = generator.get_next_tokens()
                for row, i in enumerate(mine):
                    if finish[i]:
                        continue
                    token = int(next_tokens[row])
                    counts[i] += 1
                    if token in self.eos_ids:
                        finish[i] = "stop"
                        continue
                    piece = streams[i].decode(token)
                    texts[i], piece, stopped = self._apply_stop(texts[i], piece, params.stop)
                    if piece:
                        pieces[i] = piece
                    if stopped:
                        finish[i] = "stop"
                    elif counts[i] >= params.max_tokens:
                        finish[i] = "length"
            if pieces and on_step:
                on_step(pieces)
        return [Completion(i, texts[i], finish[i], prompt_tokens, counts[i]) for i in range(n)]

    @staticmethod
    def _apply_stop(text: str, piece: str, stops: list[str]) -> tuple[str, str, bool]:
        """(new text, piece to emit, stopped): the text is cut before the first stop string
        that completes with this piece (one may span earlier pieces)."""
        combined = text + piece
        if not stops or not piece:
            return combined, piece, False
        hits = [pos for s in stops if (pos := combined.find(s, max(0, len(text) - len(s) + 1))) >= 0]
        if not hits:
            return combined, piece, False
        cut = min(hits)
        return combined[:cut], combined[len(text) : cut], True
