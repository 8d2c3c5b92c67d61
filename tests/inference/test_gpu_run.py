"""bench/gpu_run.sh, what a GPU machine without network runs, on this machine's CPU: the pieces
are checked before anything is unpacked, and the whole sequence (environments over the machine's
packages, then bench_gpu.py's build, triton, run and train stages) runs its dry run here, so the
script a GPU lease depends on has run before the lease starts."""

import hashlib
import json
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = [pytest.mark.bench, pytest.mark.triton, pytest.mark.slow]


def _pieces(folder: Path, *, damage: bool = False) -> Path:
    """A bundle of one file under site/, in three pieces, with its SHA256SUMS."""
    source = folder / "src" / "site"
    source.mkdir(parents=True)
    (source / "bundled_marker.py").write_text("WHERE = 'bundle'\n")
    stream = folder / "stream.tar.xz"
    with lzma.open(stream, "wb") as packed, tarfile.open(fileobj=packed, mode="w") as tar:
        tar.add(source, arcname="site")
    data = stream.read_bytes()
    pieces = folder / "pieces"
    pieces.mkdir()
    size = len(data) // 3 + 1
    sums = []
    for i in range(3):
        piece = pieces / f"bundle.tar.xz.{i:02d}"
        piece.write_bytes(data[i * size : (i + 1) * size])
        sums.append(f"{hashlib.sha256(piece.read_bytes()).hexdigest()}  {piece.name}")
    sums.append(f"# {hashlib.sha256(data).hexdigest()}  bundle.tar.xz (the whole stream)")
    (pieces / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    if damage:
        (pieces / "bundle.tar.xz.01").write_bytes(b"not the piece")
    return pieces


def _run(tmp_path: Path, pieces: Path, deadline: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_run.sh"), str(deadline)],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "PIECES": str(pieces),
            "PYTHON": sys.executable,
            "SITE": str(tmp_path / "site"),
            "OUT": str(tmp_path / "out"),
            "WORK": str(tmp_path / "work"),
            "ENV_DIR": str(tmp_path / "env"),
            "TRAIN_ENV": str(tmp_path / "train-env"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=deadline + 60,
    )


def test_a_damaged_piece_is_refused_before_anything_is_unpacked(tmp_path):
    done = _run(tmp_path, _pieces(tmp_path, damage=True), 60, STAGES="build")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "a piece is missing or damaged" in done.stdout
    assert not (tmp_path / "site").exists() and not (tmp_path / "site.partial").exists()


def test_the_gpu_script_runs_every_stage_dry_on_the_cpu(tmp_path):
    done = _run(
        tmp_path,
        _pieces(tmp_path),
        400,
        STAGES="build,triton,run,train",
        TRAIN_STEPS="1",
        BENCH_ARGS="--dry-run --max-tokens 8 --run-prompts 4 --run-workers 4",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # Both environments import the bundle's packages, and the trainer's takes this machine's first.
    for env in ("env", "train-env"):
        python = tmp_path / env / "bin" / "python"
        probe = subprocess.run(
            [str(python), "-c", "import bundled_marker, numpy; print(bundled_marker.WHERE)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.strip() == "bundle"
    figures = [json.loads(line) for line in (tmp_path / "out" / "figures.jsonl").read_text().splitlines()]
    assert [entry["stage"] for entry in figures] == ["build", "triton", "run", "train"]
    triton = {row["what"] for row in figures[1]["rows"]}
    assert triton == {"one request", "8 concurrent", "32 concurrent", "64 concurrent"}
    run = figures[2]
    assert run["outcome"] == {"status": "succeeded", "done": 4, "failed": 0, "total": 4}
    train = figures[3]["rows"]
    assert [row["what"] for row in train] == ["GRPO LoRA, 1 steps", "GRPO full model, 1 steps"]
    for row in train:
        # no GPU here: the trainer said so, and each version was built as its parent (a CPU build)
        assert row["device"] == "cpu" and row["peak_gpu_memory_mb"] is None
        assert row["built"] == {"target": "cpu", "precision": "fp32", "paged_attention": False}
        assert row["export"]["serve_s"] > 0
    assert (tmp_path / "out" / "triton-train.log").is_file()
