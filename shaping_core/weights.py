"""The shipped generator (version 1) and how weights are fingerprinted. Django-free: the
migration that creates version 1 uses it too."""

from __future__ import annotations

import hashlib
from pathlib import Path

GENERATOR_MODEL = "qwen3"  # the Triton model that serves the generator

# Relative to the project root, as GeneratorVersion.onnx_dir is stored.
SHIPPED_ONNX_DIR = "inference/weights/tiny-qwen3"
# The Hugging Face weights those ONNX files were converted from: what training starts from
# (`python -m inference.build_model --keep-hf`; BUILD.json records their sha256).
SHIPPED_HF_DIR = "inference/weights/tiny-qwen3/hf"

# Hashed in this order, as one stream: the external weights, then the graph.
HASHED_FILES = ("model.onnx.data", "model.onnx")


def weights_sha256(onnx_dir: Path) -> str:
    """One sha256 over the bytes of `model.onnx.data` followed by the bytes of `model.onnx`
    (a file that is missing contributes nothing; "" when both are missing)."""
    digest = hashlib.sha256()
    found = False
    for name in HASHED_FILES:
        path = Path(onnx_dir) / name
        if not path.is_file():
            continue
        found = True
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest() if found else ""


def shipped_version(project_root: Path) -> dict:
    """The fields of version 1: the tiny model shipped in the repository, ready and current."""
    return {
        "model_name": GENERATOR_MODEL,
        "number": 1,
        "parent": None,
        "dataset_version": None,
        "method": "",
        "config": {},
        "weights_sha256": weights_sha256(Path(project_root) / SHIPPED_ONNX_DIR),
        "onnx_dir": SHIPPED_ONNX_DIR,
        "hf_dir": SHIPPED_HF_DIR,
        "status": "ready",
        "is_current": True,
    }
