"""Prompts are rendered with the model folder's own chat template, as transformers renders it."""

import json
import shutil
from pathlib import Path

import pytest

from inference.engine.chat_template import ChatTemplate, ChatTemplateError
from inference.errors import InvalidRequest
from shaping_core.weights import SHIPPED_ONNX_DIR

TINY = Path(__file__).resolve().parents[2] / SHIPPED_ONNX_DIR
EMPTY_THINK = "<think>\n\n</think>\n\n"
# SmolLM2-Instruct's template, as its GGUF carries it: ChatML with a default system prompt, no thinking.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A Llama-3-style template: special tokens from tokenizer_config.json and raise_exception.
LLAMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHAT = [
    {"role": "system", "content": "You are Aria."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>plan</think>\n\nHello!"},
    {"role": "user", "content": "Again"},
]


def model_dir(tmp_path: Path, *, template: str | None = None, config: dict | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_the_tiny_qwen3_template_keeps_qwen3s_thinking_rules():
    template = ChatTemplate.from_model_dir(TINY)
    assert template.supports_thinking
    text = template.render(CHAT)
    assert text.startswith("<|im_start|>system\nYou are Aria.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
    assert "<|im_start|>assistant\nHello!<|im_end|>\n" in text  # earlier thinking dropped
    assert text.endswith("<|im_start|>assistant\n" + EMPTY_THINK)
    assert template.render(CHAT, enable_thinking=True).endswith("<|im_start|>assistant\n")


def test_a_template_without_a_thinking_switch_renders_its_own_format_and_refuses_thinking(tmp_path):
    template = ChatTemplate.from_model_dir(model_dir(tmp_path, template=SMOLLM2))
    assert not template.supports_thinking
    user_only = template.render([{"role": "user", "content": "Hi"}])
    assert user_only == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert template.render(CHAT).endswith("Again<|im_end|>\n<|im_start|>assistant\n")  # no empty think block
    with pytest.raises(InvalidRequest, match="no thinking mode"):
        template.render(CHAT, enable_thinking=True)


def test_special_tokens_and_a_list_of_named_templates_come_from_tokenizer_config(tmp_path):
    config = {
        "bos_token": {"content": "<|begin_of_text|>"},
        "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": LLAMA}],
    }
    template = ChatTemplate.from_model_dir(model_dir(tmp_path, config=config))
    assert template.path.endswith("tokenizer_config.json")
    text = template.render([{"role": "user", "content": "  Hi  "}])
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_the_jinja_file_wins_over_tokenizer_config(tmp_path):
    folder = model_dir(tmp_path, template=SMOLLM2, config={"chat_template": LLAMA})
    assert ChatTemplate.from_model_dir(folder).path.endswith("chat_template.jinja")


@pytest.mark.parametrize(
    ("template", "config", "message"),
    [
        (None, {}, "has no chat template"),
        (None, None, "has no chat template"),
        ("{% for m in messages %}", None, "chat_template.jinja: the chat template does not compile"),
        ("{{ raise_exception('no system role') }}", None, "chat_template.jinja: .*cannot render a conversation"),
        ("{{ messages[0].content.__class__.__mro__ }}", None, "chat_template.jinja: .*cannot render"),  # sandboxed
        ("{{ messages[0]['content'] }}", None, "leaves the user's message out"),
        ("   ", None, "chat_template.jinja: the chat template is empty"),
    ],
)
def test_a_template_that_cannot_render_is_refused_naming_the_file(tmp_path, template, config, message):
    with pytest.raises(ChatTemplateError, match=message):
        ChatTemplate.from_model_dir(model_dir(tmp_path, template=template, config=config))


def test_a_broken_tokenizer_config_is_refused_naming_it(tmp_path):
    folder = model_dir(tmp_path)
    (folder / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ChatTemplateError, match="tokenizer_config.json is not readable JSON"):
        ChatTemplate.from_model_dir(folder)


def test_the_engine_refuses_a_model_folder_without_a_template_before_loading_it(tmp_path):
    from inference.engine import BatchingEngine

    copy = tmp_path / "tiny"
    shutil.copytree(TINY, copy, ignore=shutil.ignore_patterns("hf"))
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(ChatTemplateError, match=f"{copy} has no chat template"):
        BatchingEngine(copy)


@pytest.mark.parametrize("messages", [[], None, [{"role": "robot", "content": "x"}], [{"role": "user"}]])
def test_bad_messages_are_refused(messages):
    with pytest.raises(InvalidRequest):
        ChatTemplate.from_model_dir(TINY).render(messages)
