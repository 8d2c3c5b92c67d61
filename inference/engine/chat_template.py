"""A model folder's own chat template, rendered as transformers renders it.

Every engine turns messages into the text a model continues with the template that came with
the model (`chat_template.jinja`, or `chat_template` in `tokenizer_config.json`), in a sandboxed
Jinja environment set up like transformers' `apply_chat_template`: the same options, the
`raise_exception` and `strftime_now` helpers, a `tojson` that keeps non-ASCII text, and the
tokenizer's special tokens as variables. So a Qwen3 export gets Qwen3's ChatML with its
thinking switch, a SmolLM2 or Llama export its own format, and the trainer (TRL renders the
same file) sees the prompts the server sees.

Thinking is offered only where the template has a switch for it (it reads `enable_thinking`);
asking a model without one to think is refused. A folder whose template is missing, does not
compile or cannot render a plain conversation is refused when the model loads, naming the file.

Free of Django; imported by the engines and by the tools that build and check model folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from inference.errors import InvalidRequest

TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token")
# What a template must render before its model is served: a persona, a question, an answer, a
# follow-up, with the generation prompt (what every generate and judge request looks like).
_PROBE = [
    {"role": "system", "content": "You are a test."},
    {"role": "user", "content": "Hello?"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Again?"},
]


class ChatTemplateError(ValueError):
    """A model folder's chat template that is missing, does not compile or does not render;
    the message names the file."""


def check_messages(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {role, content}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InvalidRequest(f"messages[{i}] must have a string content")
        if message.get("role") not in ("system", "user", "assistant"):
            raise InvalidRequest(f"messages[{i}].role must be system, user or assistant")


@dataclass(frozen=True)
class ChatTemplate:
    """One model's template, compiled; `render` is thread-safe."""

    source: str
    path: str  # the file it came from, for messages
    special_tokens: dict
    _compiled: object = None

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ChatTemplate:
        """The template of a model folder (a Hugging Face or an onnxruntime-genai one), checked by
        rendering a short conversation; ChatTemplateError names the file otherwise."""
        model_dir = Path(model_dir)
        config_path = model_dir / TOKENIZER_CONFIG
        config = {}
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ChatTemplateError(f"{config_path} is not readable JSON: {exc}") from None
            if not isinstance(config, dict):
                raise ChatTemplateError(f"{config_path} is not a JSON object")
        template_path = model_dir / TEMPLATE_FILE
        if template_path.is_file():
            try:
                source = template_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ChatTemplateError(f"{template_path} is not readable: {exc}") from None
            where = template_path
        else:
            source, where = _from_tokenizer_config(config), config_path
            if source is None:
                raise ChatTemplateError(
                    f"{model_dir} has no chat template: neither {TEMPLATE_FILE} nor a chat_template in "
                    f"{TOKENIZER_CONFIG}; copy the one the model was trained with into {template_path}"
                )
        return cls.from_source(source, path=str(where), special_tokens=_special_tokens(config))

    @classmethod
    def from_source(cls, source: str, *, path: str = "<template>", special_tokens: dict | None = None) -> ChatTemplate:
        if not isinstance(source, str) or not source.strip():
            raise ChatTemplateError(f"{path}: the chat template is empty")
        import jinja2

        try:
            compiled = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"{path}: the chat template does not compile: {exc}") from None
        template = cls(source=source, path=path, special_tokens=dict(special_tokens or {}), _compiled=compiled)
        try:
            text = template.render(_PROBE)
        except InvalidRequest as exc:
            raise ChatTemplateError(f"{path}: the chat template cannot render a conversation: {exc}") from None
        if "Again?" not in text:
            raise ChatTemplateError(f"{path}: the chat template leaves the user's message out of the prompt")
        return template

    @property
    def supports_thinking(self) -> bool:
        """Whether the template has a thinking switch (Qwen3's `enable_thinking`)."""
        return "enable_thinking" in self.source

    def render(self, messages: list[dict], *, enable_thinking: bool = False, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`. With a thinking switch, thinking is on or off as asked;
        without one, asking for thinking is refused (InvalidRequest)."""
        check_messages(messages)
        variables = {
            **self.special_tokens,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "add_generation_prompt": add_generation_prompt,
        }
        if self.supports_thinking:
            variables["enable_thinking"] = bool(enable_thinking)
        elif enable_thinking:
            raise InvalidRequest("this model's chat template has no thinking mode: send enable_thinking false")
        import jinja2

        try:
            return self._compiled.render(**variables)
        except jinja2.TemplateError as exc:
            raise InvalidRequest(f"{self.path}: the chat template refused these messages: {exc}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise InvalidRequest(f"{self.path}: the chat template failed on these messages: {exc}") from None


def _from_tokenizer_config(config: dict) -> str | None:
    """`chat_template` in a tokenizer_config.json: a string, or a list of named templates of
    which the one named "default" is used (as transformers does)."""
    value = config.get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) else None


def _special_tokens(config: dict) -> dict:
    tokens = {}
    for name in SPECIAL_TOKENS:
        value = config.get(name)
        if isinstance(value, dict):  # an AddedToken written out
            value = value.get("content")
        tokens[name] = value if isinstance(value, str) else ""
    return tokens


def _environment():
    """transformers' environment for chat templates (`_compile_jinja_template`)."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env
