"""The backend interface every pipeline talks to, and the requests it takes.

Three implementations: `TritonBackend` (tritonclient gRPC against the bundled CPU
server or NVIDIA's container), `InProcessBackend` (the same engine code in this
process) and `OpenAIBackend` (an OpenAI-compatible server named in the settings). All
raise the errors of `inference.errors`, and each declares what it can do (`Capabilities`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from inference.engine import GUIDANCE_TYPES, Completion, SamplingParams
from inference.judging import JudgeResult

OnDelta = Callable[[int, str], None]  # (index in the group, new text)

GENERATOR_MODEL = "qwen3"
JUDGE_MODEL = "judge"


@dataclass
class GenerateRequest:
    messages: list[dict] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    prompt: str | None = None
    # How often streamed pieces are sent (coalesced in between); None: the model's default.
    stream_interval_ms: int | None = None
    # Which served version of the generator answers (inference/versions/repository.py); None:
    # the server's choice (the newest ready one on Triton, the default model in process).
    model_version: int | None = None
    # The order in which a batching engine admits requests: "interactive" (someone waits at
    # a page) first, then one request per client (a run: "run-12") in turn.
    client: str = ""
    priority: str = ""

    def as_payload(self) -> dict:
        payload = {"params": asdict(self.params), **_order(self)}
        if self.stream_interval_ms is not None:
            payload["stream_interval_ms"] = self.stream_interval_ms
        if self.messages is not None:
            payload["messages"] = self.messages
        if self.prompt is not None:
            payload["prompt"] = self.prompt
        return payload


@dataclass
class JudgeRequest:
    rubric: dict
    messages: list[dict]
    completion: str
    seed: int | None = None
    client: str = ""
    priority: str = ""

    def as_payload(self) -> dict:
        return {
            "rubric": self.rubric,
            "messages": self.messages,
            "completion": self.completion,
            "seed": self.seed,
            **_order(self),
        }


def _order(request) -> dict:
    return {k: v for k, v in (("client", request.client), ("priority", request.priority)) if v}


@dataclass
class Health:
    """What the dashboard shows: is the server up, is each model ready."""

    backend: str
    target: str
    server_ready: bool
    models: dict[str, bool]
    detail: str = ""
    # Per model, what its batching engine is doing: {"batch", "queue", "tokens_per_s", ...}.
    engines: dict[str, dict] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.server_ready and all(self.models.values())

    def as_dict(self) -> dict:
        return {**asdict(self), "ready": self.ready}


@dataclass(frozen=True)
class Capabilities:
    """What a backend does, declared: a request for what it cannot do is refused (InvalidRequest)
    or documented as the server's own business, never dropped silently. The defaults are the
    engine's (Triton, in process); an OpenAI-compatible endpoint has what its settings declare."""

    # A group of n completions is one request (the server's n); else n requests.
    group_in_one_request: bool = True
    # The guidance types `generate` takes (inference.engine.GUIDANCE_TYPES).
    guidance: frozenset[str] = frozenset(GUIDANCE_TYPES)
    # How the judge's answer is constrained ("regex", "json_schema"); None: free text, parsed.
    judge_guidance: str | None = "regex"
    # enable_thinking is honoured per request (else the server's chat template decides).
    thinking: bool = True
    top_k: bool = True
    # The same seed gives the same texts.
    reproducible: bool = True
    # It runs inference.engine: for a seed, the texts are the in-process backend's.
    engine: bool = True
    # A request too long for the model's context is refused before anything is generated.
    checks_context: bool = True


class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def generate(self, request: GenerateRequest, on_delta: OnDelta | None = None) -> list[Completion]: ...

    def judge(self, request: JudgeRequest) -> JudgeResult: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...
