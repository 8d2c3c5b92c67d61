"""bench/bench_volume.py, the figure behind docs/deploy.md's choice of a shared volume over an
object store, run for one trial on the tiny model: each way moved the version's bytes between
hosts over the network (a mount another host's processes could not see would move nothing and
still "load" from an empty folder's neighbour), the loads answered, and nothing is left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shaping_core.weights import SHIPPED_ONNX_DIR

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.hosts, pytest.mark.bench, pytest.mark.slow, pytest.mark.timeout(300)]


def test_each_way_moves_the_version_between_hosts(tmp_path):
    model = ROOT / SHIPPED_ONNX_DIR
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    weights = (model / "model.onnx.data").stat().st_size  # what a load must read, at least
    out = tmp_path / "volume.json"
    done = subprocess.run(
        [sys.executable, "bench/bench_volume.py", "--model", str(model), "--trials", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "vs volume" in done.stdout
    trials = json.loads(out.read_text())["trials"]
    (volume,), (store,), (local,) = trials["volume"], trials["object store"], trials["local"]
    # The volume: the trainer wrote through its mount, the Triton host read through its own.
    assert volume["sent"]["trainer"] >= size and volume["sent"]["storage"] >= weights
    # The object store: an upload from the trainer, a download to the Triton host.
    assert store["sent"]["trainer"] >= size and store["sent"]["storage"] >= size
    assert store["fetch"] > 0
    # The floor moved nothing between hosts.
    assert all(sent < size / 10 for sent in local["sent"].values())
    assert all(trial["answered"] >= 1 for trial in (volume, store, local))
    # Nothing left: no mount, no namespace.
    assert "bench-volume-" not in Path("/proc/mounts").read_text()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "-storage" not in namespaces and "-trainer" not in namespaces
