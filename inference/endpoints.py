"""OpenAI-compatible endpoints, configured by name in the environment (read once by settings).

A run names an endpoint, never an address: the addresses live here, set by whoever deploys.

    OPENAI_ENDPOINTS=vllm,judge                      the names, comma-separated
    OPENAI_ENDPOINT_VLLM_URL=http://vllm:8000/v1     base URL of the OpenAI-compatible API
    OPENAI_ENDPOINT_VLLM_MODEL=Qwen/Qwen3-8B         the served model name sent with each request
    OPENAI_ENDPOINT_VLLM_API_KEY_ENV=VLLM_API_KEY    (optional) the variable that holds its key
    OPENAI_ENDPOINT_VLLM_CAPABILITIES=n,top_k        (optional) what the server does, see CAPABILITIES
    OPENAI_ENDPOINT_VLLM_CONCURRENCY=8               (optional) requests in flight at once
    OPENAI_ENDPOINT_VLLM_TIMEOUT_S=120               (optional) default INFERENCE_TIMEOUT_S
    OPENAI_ENDPOINT_VLLM_MAX_RETRIES=2               (optional) retries of 408/409/429/5xx, resets, timeouts

Only the name of the key's variable is kept (the key is read when the backend is made, and
never stored or shown). Free of Django and of heavy imports: settings imports it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# What a server can do beyond plain chat completions (messages, max_tokens, temperature, top_p,
# seed, stop, streaming). Nothing is assumed: an endpoint declares each one it has.
CAPABILITIES = {
    "n": "honours `n`: a group of n completions is one request (else n requests)",
    "seed": "the same seed gives the same text (reproducible sampling)",
    "top_k": "takes `top_k` in the request body (vLLM, SGLang)",
    "thinking": "takes `chat_template_kwargs.enable_thinking`: Qwen3 thinking on or off per request",
    "generation_config": "transformers serve: sampling travels in its `generation_config` field",
    "json_schema": "`response_format` of type json_schema: JSON-schema guidance",
    "structured_outputs": "vLLM 0.12 and later: `structured_outputs` regex / JSON-schema guidance",
    "guided": "vLLM before 0.12: `guided_regex` / `guided_json` guidance",
}
# Backend names a run could confuse with an endpoint's.
RESERVED = {"triton", "inprocess", "openai", "default"}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_RETRIES = 2


class EndpointConfigError(ValueError):
    """A variable of an endpoint is missing or wrong; the message names it."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    model: str
    api_key_env: str = ""
    capabilities: frozenset[str] = field(default_factory=frozenset)
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float = 120.0
    max_retries: int = DEFAULT_MAX_RETRIES

    def api_key(self) -> str:
        """The key, from the environment now (empty when the endpoint needs none)."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    @property
    def host(self) -> str:
        """The URL without credentials or path, for health pages and logs."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def endpoints_from_env(environ: Mapping[str, str], *, default_timeout_s: float = 120.0) -> dict[str, Endpoint]:
    """Every endpoint OPENAI_ENDPOINTS names, checked; EndpointConfigError naming the variable."""
    names = [n.strip() for n in environ.get("OPENAI_ENDPOINTS", "").split(",") if n.strip()]
    endpoints: dict[str, Endpoint] = {}
    for name in names:
        if not NAME_RE.match(name):
            raise EndpointConfigError(
                f"OPENAI_ENDPOINTS: {name!r} is not a name (a-z first, then a-z, 0-9 or _, at most 40)"
            )
        if name in RESERVED:
            raise EndpointConfigError(f"OPENAI_ENDPOINTS: {name!r} is reserved ({', '.join(sorted(RESERVED))})")
        if name in endpoints:
            raise EndpointConfigError(f"OPENAI_ENDPOINTS: {name!r} is named twice")
        endpoints[name] = _endpoint(name, environ, default_timeout_s)
    return endpoints


def _endpoint(name: str, environ: Mapping[str, str], default_timeout_s: float) -> Endpoint:
    prefix = f"OPENAI_ENDPOINT_{name.upper()}_"

    def var(suffix: str) -> str:
        return environ.get(prefix + suffix, "").strip()

    url = var("URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointConfigError(f"{prefix}URL={url!r}: expected an http(s) URL, e.g. http://host:8000/v1")
    model = var("MODEL")
    if not model:
        raise EndpointConfigError(f"{prefix}MODEL: required (the served model name)")
    key_env = var("API_KEY_ENV")
    if key_env and not environ.get(key_env):
        raise EndpointConfigError(f"{prefix}API_KEY_ENV={key_env}: {key_env} is not set")
    capabilities = {c.strip() for c in var("CAPABILITIES").split(",") if c.strip()}
    unknown = capabilities - set(CAPABILITIES)
    if unknown:
        raise EndpointConfigError(
            f"{prefix}CAPABILITIES: unknown {', '.join(sorted(unknown))} (known: {', '.join(CAPABILITIES)})"
        )
    return Endpoint(
        name=name,
        url=url,
        model=model,
        api_key_env=key_env,
        capabilities=frozenset(capabilities),
        concurrency=_number(prefix + "CONCURRENCY", var("CONCURRENCY"), DEFAULT_CONCURRENCY, int, 1),
        timeout_s=_number(prefix + "TIMEOUT_S", var("TIMEOUT_S"), default_timeout_s, float, 0.001),
        max_retries=_number(prefix + "MAX_RETRIES", var("MAX_RETRIES"), DEFAULT_MAX_RETRIES, int, 0),
    )


def _number(variable: str, raw: str, default, cast, minimum):
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise EndpointConfigError(f"{variable}={raw!r}: expected a number") from None
    if value < minimum:
        raise EndpointConfigError(f"{variable}={raw}: must be at least {minimum}")
    return value
