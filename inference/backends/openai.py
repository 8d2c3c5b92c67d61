"""The OpenAI-compatible backend: chat completions over HTTP with the official `openai` client,
against an endpoint named in the settings (inference/endpoints.py): vLLM, TGI, SGLang,
`transformers serve`, a hosted API.

- Every request streams (the final texts are the streamed pieces added up, whatever the server).
- Transient failures (408, 409, 429, 5xx, connection resets, timeouts) are retried by the client
  itself, `max_retries` times with exponential backoff and jitter (0.5 s doubling up to 8 s, less
  up to a quarter), honouring a server's Retry-After; what still fails is BackendUnavailable,
  which a run's task manager retries again and the watchdog resumes after an outage.
- At most `concurrency` requests of this endpoint are in flight in this process (a semaphore).
- A group of n completions is one request where the endpoint declares `n`, else n requests in
  parallel, the i-th with seed + i (one seed for all would give n equal texts).
- Stop strings are sent to the server and also applied here, as the engine applies them (the
  text ends before the stop string); servers differ in whether they keep it.
- Qwen3 thinking: a server that splits the thinking out (`reasoning_content` / `reasoning`)
  gets it put back as the engine would have produced it (`<think>` ... `</think>`), so think
  tags are checked the same way whatever made the text.
- The judge is asked as the engine's judge is, under the guidance the endpoint offers (regex,
  else a JSON schema); without any its free-text answer is parsed by `judging.parse_judgment`,
  and one that will not parse is a JudgeOutputError carrying the raw text.

Errors are the inference layer's: a wrong key or a model the server does not serve is
BackendRefused, a request the server calls invalid is InvalidRequest, a malformed answer is an
InferenceError saying so.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from inference.backends.base import Capabilities, GenerateRequest, Health, JudgeRequest, OnDelta
from inference.endpoints import Endpoint
from inference.engine import Completion, SamplingParams, apply_stop, check_messages
from inference.errors import BackendRefused, BackendUnavailable, InferenceError, InvalidRequest
from inference.judging import (
    JudgeResult,
    judge_guidance,
    judge_json_schema,
    judge_max_tokens,
    judge_messages,
    model_criteria,
    parse_judgment,
)

MAX_STOP_SENT = 4  # OpenAI's limit; the rest are applied here only
SEED_MODULO = 2**31


def capabilities_of(endpoint: Endpoint) -> Capabilities:
    """What the backend does over this endpoint, from what the endpoint declares."""
    declared = endpoint.capabilities
    guidance = set()
    if declared & {"structured_outputs", "guided"}:
        guidance |= {"regex", "json_schema"}
    if "json_schema" in declared:
        guidance.add("json_schema")
    return Capabilities(
        group_in_one_request="n" in declared,
        guidance=frozenset(guidance),
        judge_guidance="regex" if "regex" in guidance else "json_schema" if guidance else None,
        thinking="thinking" in declared,
        top_k=bool(declared & {"top_k", "generation_config"}),
        reproducible="seed" in declared,
        engine=False,
        checks_context=False,
    )


class OpenAIBackend:
    name = "openai"

    def __init__(self, endpoint: Endpoint, *, client=None):
        import openai  # about a second to import: only where an endpoint is used

        self.endpoint = endpoint
        self.capabilities = capabilities_of(endpoint)
        self.client = client or openai.OpenAI(
            base_url=endpoint.url,
            # A server without keys takes any; the client insists on one.
            api_key=endpoint.api_key() or "none",
            timeout=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
        )
        self._slots = threading.BoundedSemaphore(endpoint.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=endpoint.concurrency, thread_name_prefix=f"openai-{endpoint.name}")

    @property
    def where(self) -> str:
        return f"endpoint {self.endpoint.name!r} (model {self.endpoint.model!r})"

    # --- the interface ---------------------------------------------------------------

    def generate(self, request: GenerateRequest, on_delta: OnDelta | None = None) -> list[Completion]:
        params = request.params
        params.validate()
        self._check(request)
        if params.n == 1 or self.capabilities.group_in_one_request:
            return self._complete(request.messages, params, params.n, params.seed, 0, on_delta)
        futures = [
            self._pool.submit(
                self._complete,
                request.messages,
                params,
                1,
                None if params.seed is None else (params.seed + i) % SEED_MODULO,
                i,
                on_delta,
            )
            for i in range(params.n)
        ]
        completions: list[Completion] = []
        for future in futures:
            completions.extend(future.result())  # the first failure is the group's
        return completions

    def judge(self, request: JudgeRequest) -> JudgeResult:
        rubric = request.rubric
        model_criteria(rubric)  # a rubric without criteria for a model is refused here
        check_messages(request.messages)
        if not isinstance(request.completion, str):
            raise InvalidRequest("completion must be a string")
        mode = self.capabilities.judge_guidance
        guidance = None
        if mode == "regex":
            guidance = judge_guidance(rubric)
        elif mode == "json_schema":
            guidance = json.dumps(judge_json_schema(rubric))
        params = SamplingParams(
            max_tokens=judge_max_tokens(rubric),
            temperature=0.0,
            top_p=1.0,
            top_k=0,
            seed=request.seed,
            guidance_type=mode,
            guidance=guidance,
        )
        messages = judge_messages(
            rubric, request.messages, request.completion, answer="json" if mode == "json_schema" else "tags"
        )
        (answer,) = self._complete(messages, params, 1, request.seed, 0, None)
        return parse_judgment(rubric, answer.text)

    def health(self) -> Health:
        model = self.endpoint.model
        target = f"{self.endpoint.name} {self.endpoint.host}"
        try:
            listed = [m.id for m in self.client.with_options(timeout=5, max_retries=0).models.list()]
        except Exception as exc:
            return Health(self.name, target, False, {model: False}, str(self._error(exc)))
        ready = model in listed
        detail = "" if ready else f"the server does not list {model!r} (it lists: {', '.join(listed[:5]) or 'none'})"
        return Health(self.name, target, True, {model: ready}, detail)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # --- one request ---------------------------------------------------------------------

    def _check(self, request: GenerateRequest) -> None:
        if request.prompt is not None:
            raise InvalidRequest(f"{self.where} takes chat messages, not a raw prompt")
        check_messages(request.messages)
        if request.model_version is not None:
            raise InvalidRequest(
                f"{self.where} serves one model; generator version {request.model_version} is served by Triton"
            )
        kind = request.params.guidance_type
        if kind is not None and kind not in self.capabilities.guidance:
            declared = ", ".join(sorted(self.endpoint.capabilities)) or "none"
            raise InvalidRequest(f"{self.where} offers no {kind} guidance (its declared capabilities: {declared})")

    def _body(self, messages: list[dict], params: SamplingParams, n: int, seed: int | None) -> dict:
        declared = self.endpoint.capabilities
        body: dict = {
            "model": self.endpoint.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        extra: dict = {}
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = params.stop[:MAX_STOP_SENT]
        if "generation_config" in declared:  # transformers serve samples only when told to here
            sampling = {"do_sample": params.temperature > 0}
            if params.temperature > 0:
                sampling.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
            extra["generation_config"] = json.dumps(sampling)
        if "top_k" in declared and params.top_k > 0:
            extra["top_k"] = params.top_k
        if "thinking" in declared:
            extra["chat_template_kwargs"] = {"enable_thinking": params.enable_thinking}
        if params.guidance_type is not None:
            self._guide(body, extra, params.guidance_type, params.guidance)
        if extra:
            body["extra_body"] = extra
        return body

    def _guide(self, body: dict, extra: dict, kind: str, guidance: str) -> None:
        declared = self.endpoint.capabilities
        value = json.loads(guidance) if kind == "json_schema" else guidance
        if "structured_outputs" in declared:
            extra["structured_outputs"] = {"regex" if kind == "regex" else "json": value}
        elif "guided" in declared:
            extra["guided_regex" if kind == "regex" else "guided_json"] = value
        else:  # json_schema by the standard field (_check let nothing else through)
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": value, "strict": True},
            }

    def _complete(
        self,
        messages: list[dict],
        params: SamplingParams,
        n: int,
        seed: int | None,
        first_index: int,
        on_delta: OnDelta | None,
    ) -> list[Completion]:
        """One streamed request of n choices, numbered from `first_index`."""
        body = self._body(messages, params, n, seed)
        choices: dict[int, _Choice] = {}
        usage = None
        cut_short = False
        deadline = time.monotonic() + self.endpoint.timeout_s
        with self._slots:
            try:
                stream = self.client.chat.completions.create(**body)
                with stream:  # leaving it closes the response: the server stops generating
                    for chunk in stream:
                        usage = getattr(chunk, "usage", None) or usage
                        for choice in chunk.choices or ():
                            state = choices.get(choice.index)
                            if state is None:
                                state = choices[choice.index] = _Choice(params.stop, params.enable_thinking)
                            piece = state.feed(choice.delta, choice.finish_reason)
                            if piece and on_delta is not None:
                                on_delta(first_index + choice.index, piece)
                        if len(choices) == n and all(c.cut for c in choices.values()):
                            cut_short = True  # every text reached a stop string: no need to read on
                            break
                        if time.monotonic() > deadline:
                            raise BackendUnavailable(
                                f"{self.where} gave no complete answer within {self.endpoint.timeout_s:g}s"
                            )
            except InferenceError:
                raise
            except Exception as exc:
                raise self._error(exc) from exc
        if not choices:
            raise InferenceError(f"{self.where} answered without any completion (is it a chat completions API?)")
        prompt_tokens = getattr(usage, "prompt_tokens", None) or 0
        exact = usage is not None and n == 1 and not cut_short
        return [
            Completion(
                index=first_index + index,
                text=state.text,
                finish_reason=state.finish_reason(params.max_tokens),
                prompt_tokens=prompt_tokens,
                completion_tokens=usage.completion_tokens if exact else min(state.pieces, params.max_tokens),
            )
            for index, state in sorted(choices.items())
        ]

    def _error(self, exc: BaseException) -> InferenceError:
        """The client's exceptions as the inference layer's, each naming the endpoint."""
        import openai

        where = self.where
        retried = f"after {self.endpoint.max_retries} retries"
        if isinstance(exc, openai.APITimeoutError):
            return BackendUnavailable(f"{where}: no answer within {self.endpoint.timeout_s:g}s ({retried})")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return BackendUnavailable(f"{where}: cannot reach {self.endpoint.host} ({retried}): {cause}")
        if isinstance(exc, openai.APIStatusError):
            status, detail = exc.status_code, _detail(exc)
            if status in (401, 403):
                key = self.endpoint.api_key_env
                whose = f"the key in {key}" if key else "no key (none is configured)"
                return BackendRefused(f"{where}: the server refused {whose} ({status}): {detail}")
            if status in (400, 404) and self.endpoint.model in detail and "model" in detail.lower():
                return BackendRefused(f"{where}: the server does not serve this model ({status}): {detail}")
            if status == 404:
                return BackendRefused(f"{where}: not found ({status}; is the URL the API's /v1?): {detail}")
            if status in (400, 422):
                return InvalidRequest(f"{where}: the server refused the request ({status}): {detail}")
            if status in (408, 409, 429) or status >= 500:
                return BackendUnavailable(f"{where}: {status} {retried}: {detail}")
            return InferenceError(f"{where}: {status}: {detail}")
        if isinstance(exc, ValueError | openai.APIResponseValidationError):
            return InferenceError(f"{where}: malformed answer: {str(exc)[:200]}")
        if isinstance(exc, openai.APIError):
            return InferenceError(f"{where}: the server reported an error: {exc.message}")
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            return BackendUnavailable(f"{where}: the connection broke: {type(exc).__name__}: {exc}")
        return InferenceError(f"{where}: {type(exc).__name__}: {exc}")


def _detail(exc) -> str:
    """The server's own words from an error answer (OpenAI's, FastAPI's or plain)."""
    body = exc.body
    if isinstance(body, dict):
        body = body.get("error", body)
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body
    return str(body if body is not None else exc.message)[:300]


@dataclass
class _Choice:
    """One completion being streamed: the text as the engine would have made it (think tags put
    back where the server split the thinking out), cut at the first stop string."""

    stops: list[str]
    opened_in_prompt: bool  # thinking on: the prompt opened the think block
    text: str = ""
    pieces: int = 0
    cut: bool = False
    finished: str | None = None
    _state: str = "start"  # start -> thinking -> answer
    _held: str = ""  # leading thinking that is only whitespace, so far
    _saw_thinking: bool = False

    def feed(self, delta, finish_reason: str | None) -> str:
        """The piece this chunk adds to the text ("" if none)."""
        if self.cut:
            return ""
        out = ""
        thinking = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
        if thinking:
            self.pieces += 1
            out += self._thinking(thinking)
        if getattr(delta, "content", None):
            self.pieces += 1
            out += self._answer(delta.content)
        if finish_reason:
            self.finished = finish_reason
        if not out:
            return ""
        self.text, out, self.cut = apply_stop(self.text, out, self.stops)
        if self.cut:
            self.finished = "stop"
        return out

    def _thinking(self, piece: str) -> str:
        self._saw_thinking = True
        if self._state != "start":
            return piece
        self._held += piece
        if not self._held.strip():
            return ""  # an empty think block (thinking off) adds nothing
        self._state = "thinking"
        held, self._held = self._held, ""
        return ("" if self.opened_in_prompt else "<think>\n") + held

    def _answer(self, piece: str) -> str:
        head = ""
        if self._state == "thinking" or (self._state == "start" and self._saw_thinking and self.opened_in_prompt):
            head = self._held + "\n</think>\n\n"  # close the block (the prompt's, when thinking is on)
        self._state, self._held = "answer", ""
        return head + piece

    def finish_reason(self, max_tokens: int) -> str:
        if self.finished in ("stop", "length"):
            return self.finished
        if self.finished:
            return self.finished  # e.g. content_filter: kept as the server said
        return "length" if self.pieces >= max_tokens else "stop"
