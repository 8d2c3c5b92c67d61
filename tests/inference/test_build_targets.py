"""The model builder's targets: what it asks onnxruntime-genai's builder for (unit test of
one function; building itself needs the `build` extra and is run by hand)."""

import json
import subprocess
from pathlib import Path

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


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        ({}, ("fp32", "cpu", False)),  # a parent with no BUILD.json: the CPU build
        ({"target": "cpu", "precision": "int4"}, ("int4", "cpu", False)),
        ({"target": "cuda", "precision": "fp16", "paged_attention": True}, ("fp16", "cuda", True)),
        ({"target": "cuda", "precision": "fp16", "paged_attention": False}, ("fp16", "cuda", False)),
    ],
)
def test_a_trained_version_is_converted_as_its_parent_was_built(monkeypatch, tmp_path, parent, expected):
    """A GPU host's base model is a CUDA (paged-attention) export: the versions trained from it must
    be too, or the GPU Triton serves them on the CPU."""
    from inference.versions import export

    seen = {}

    def run(command, **kwargs):
        seen["command"] = command
        out = Path(command[command.index("-o") + 1])
        config = {"model": {"context_length": 64}, "search": {}}
        if "use_paged_attention=true" in command:  # the builder's default cache: 60% of the GPU
            config["engine"] = {"dynamic_batching": {"gpu_utilization_factor": 0.6}}
        (out / "genai_config.json").write_text(json.dumps(config))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(build_model.subprocess, "run", run)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    kept = {"dynamic_batching": {"gpu_utilization_factor": 0.1, "max_batch_size": 64}}
    export.convert(hf, tmp_path / "v2", build=parent, engine=kept)
    command = seen["command"]
    precision, provider, paged = expected
    assert command[command.index("-p") + 1] == precision
    assert command[command.index("-e") + 1] == provider
    assert ("use_paged_attention=true" in command) is paged
    record = json.loads((tmp_path / "v2" / "BUILD.json").read_text())
    assert (record["precision"], record["target"], record["paged_attention"]) == expected
    # a paged build keeps the parent's cache size (else each version served takes 60% of the GPU)
    written = json.loads((tmp_path / "v2" / "genai_config.json").read_text())
    assert written.get("engine") == (kept if paged else None)
    # and the next version trained from this one is built the same way
    assert build_model.build_record(tmp_path / "v2")["target"] == provider


def test_keep_hf_keeps_a_copy_of_the_folder_built_from(monkeypatch, tmp_path):
    """`--from-hf DIR --keep-hf`: the build's hf/ is what training from it starts from (a GPU
    host's GENERATOR_MODEL_DIR), as a preset's weights are."""

    def run(command, **kwargs):
        out = Path(command[command.index("-o") + 1])
        (out / "genai_config.json").write_text(json.dumps({"model": {"context_length": 64}, "search": {}}))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(build_model.subprocess, "run", run)
    source = Path(build_model.__file__).parent / "weights" / "tiny-qwen3" / "hf"
    output = build_model.build(None, tmp_path / "gpu-export", from_hf=source, target="cuda", paged=True, keep_hf=True)
    kept = output / "hf"
    assert sorted(p.name for p in kept.iterdir()) == sorted(p.name for p in source.iterdir())
    assert (kept / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    record = build_model.build_record(output)
    assert record["hf_sha256"] and (record["target"], record["paged_attention"]) == ("cuda", True)
