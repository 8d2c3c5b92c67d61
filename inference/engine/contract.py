"""The engine contract: what a request asks (`SamplingParams`), what it gets back
(`Completion`, and the step events `OnStep` receives), the batcher's `Limits`, and the checks
and bookkeeping every runtime shares (the prompt's text and tokens; `SequenceText`, each token's
end of sequence, stop strings and max tokens).

Every runtime (`cpu.BatchingEngine`, `static.StaticEngine`, `paged.PagedEngine`) takes these and
imports only this module of the package's shared parts, so the runtimes and the front door
(`inference.engine.open_engine`) form no circle. Free of Django.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from inference.engine.chat_template import ChatTemplate
from inference.errors import BackendUnavailable, InvalidRequest

GUIDANCE_TYPES = ("regex", "json_schema", "lark_grammar")
MAX_N = 16

POLL_S = 0.1  # how often a waiting caller checks whether its client went away
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


def apply_stop(text: str, piece: str, stops: list[str]) -> tuple[str, str, bool]:
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


class SequenceText:
    """One sequence's text as its tokens arrive, and why it ended: the per-token bookkeeping
    every runtime shares (end of sequence, stop strings, max tokens), written once."""

    __slots__ = ("stream", "text", "count", "finish")

    def __init__(self, stream):
        self.stream = stream  # incremental detokenising: .decode(token) -> the text it adds
        self.text = ""
        self.count = 0  # tokens generated, the end-of-sequence token included
        self.finish: str | None = None  # "stop", "length", or a runtime's own ("cancelled", "error")

    def push(self, token: int, params: SamplingParams, eos_ids, *, done: bool = False) -> str:
        """Take one generated token and return the text it adds ("" at the end of the sequence;
        cut before a stop string). `finish` becomes "stop" at an end-of-sequence token, a stop
        string or `done` (the runtime's own end: a complete grammar), else "length" at
        max_tokens."""
        self.count += 1
        if token in eos_ids:
            self.finish = "stop"
            return ""
        self.text, piece, stopped = apply_stop(self.text, self.stream.decode(token), params.stop)
        if stopped or done:
            self.finish = "stop"
        elif self.count >= params.max_tokens:
            self.finish = "length"
        return piece

    def completion(self, index: int, prompt_tokens: int) -> Completion:
        return Completion(index, self.text, self.finish, prompt_tokens, self.count)


class EngineBusy(BackendUnavailable):
    """The engine's queue is full: the request was not started. Transient: retry later."""


@dataclass
class Limits:
    max_batch: int = 16  # sequences decoded together
    max_step_tokens: int = 4096  # prompt tokens prefilled between two steps (one prompt always fits)
    max_queue: int = 256  # requests waiting; more are refused with EngineBusy
    prefix_cache_mb: int = 256  # recent prompts' keys and values kept for prompts that begin alike; 0: none


def prompt_text(
    template: ChatTemplate, *, messages: list[dict] | None, prompt: str | None, enable_thinking: bool
) -> str:
    """The text the model continues: a raw prompt, or the messages in the model's chat template."""
    if (messages is None) == (prompt is None):
        raise InvalidRequest("give exactly one of messages or prompt")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("prompt must be a non-empty string")
        if enable_thinking and not template.supports_thinking:
            raise InvalidRequest("this model's chat template has no thinking mode: send enable_thinking false")
        return prompt
    return template.render(messages, enable_thinking=enable_thinking)


def checked_prompt(
    engine, *, messages: list[dict] | None, prompt: str | None, params: SamplingParams, max_batch: int | None = None
) -> np.ndarray:
    """The prompt's tokens for `engine` (encode, context_length), once the request is checked:
    valid parameters, no more sequences than the runtime's batch (`max_batch`, where it has
    one), and room in the context for max_tokens after the prompt."""
    params.validate()
    if max_batch is not None and params.n > max_batch:
        raise InvalidRequest(f"n {params.n} is more than this engine's batch of {max_batch} sequences")
    text = prompt_text(engine.chat_template, messages=messages, prompt=prompt, enable_thinking=params.enable_thinking)
    tokens = engine.encode(text)
    room = engine.context_length - len(tokens)
    if params.max_tokens > room:
        raise InvalidRequest(
            f"max_tokens {params.max_tokens} does not fit: the prompt is {len(tokens)} tokens "
            f"and the context is {engine.context_length}"
        )
    return tokens


@runtime_checkable
class Engine(Protocol):
    """What every runtime is (`cpu.BatchingEngine`, `static.StaticEngine`, `paged.PagedEngine`):
    a loaded model folder that many threads may ask at once."""

    chat_template: ChatTemplate
    context_length: int

    def encode(self, text: str) -> np.ndarray:
        """The text's token ids, no special tokens added."""

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
        """n completions of one prompt (`messages` in the folder's chat template, or a raw
        `prompt`). `on_step({index: piece})` is called in the caller's thread after each step
        that produced text; `is_cancelled()` is polled and ends every unfinished sequence with
        finish_reason "cancelled". `client` (a run) and `priority` ("interactive": someone
        waiting at a page) order admission where the runtime batches across requests.
        Refuses a bad request with InvalidRequest before anything runs."""

    def stats(self) -> dict:
        """What the runtime is doing now (batch, queue, tokens a second), for health pages."""

    def close(self) -> None:
        """Stop and let go of the model."""
