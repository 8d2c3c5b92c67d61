"""The model builder's targets: what it asks onnxruntime-genai's builder for (unit test of
one function; building itself needs the `build` extra and is run by hand)."""

import subprocess

import pytest

from inference import build_model


@pytest.mark.parametrize(("target", "precision", "provider"), [("cpu", "fp32", "cpu"), ("cuda", "fp16", "cuda")])
def test_convert_asks_the_builder_for_the_targets_precision_and_provider(
    monkeypatch, tmp_path, target, precision, provider
):
    seen = {}

    def run(command, **kwargs):
        seen["command"] = command
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(build_model.subprocess, "run", run)
    build_model.convert(tmp_path / "hf", tmp_path / "out", tmp_path / "cache", target)
    command = seen["command"]
    assert command[command.index("-p") + 1] == precision
    assert command[command.index("-e") + 1] == provider


def test_an_unknown_target_is_refused_by_the_command_line(capsys):
    with pytest.raises(SystemExit):
        build_model.main(["--target", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_a_paged_attention_build_asks_the_builder_for_it_and_needs_cuda(monkeypatch, tmp_path, capsys):
    seen = {}

    def run(command, **kwargs):
        seen["command"] = command
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(build_model.subprocess, "run", run)
    build_model.convert(tmp_path / "hf", tmp_path / "out", tmp_path / "cache", "cuda", paged=True)
    command = seen["command"]
    assert command[command.index("--extra_options") + 1] == "use_paged_attention=true"
    build_model.convert(tmp_path / "hf", tmp_path / "out", tmp_path / "cache", "cuda")
    assert "--extra_options" not in seen["command"]
    # PagedAttention runs on CUDA only: a CPU build with it is refused before anything is built.
    assert build_model.main(["--output", str(tmp_path / "cpu-paged"), "--paged-attention"]) == 1
    assert "--paged-attention needs --target cuda" in capsys.readouterr().err
    assert not (tmp_path / "cpu-paged").exists()
