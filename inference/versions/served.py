"""Which generator versions Triton serves, from the rows: the repository `serve` and
`manage.py triton` start the server on, and the version a request names when it names none.

Every ready version gets a folder in the generated
repository (settings.TRITON_REPOSITORY) naming the ONNX folder its row names (version 1: the
tiny model, or the demo model once prepared; GENERATOR_MODEL_DIR replaces it on a GPU host).
The judge serves JUDGE_MODEL_DIR, else the base model (`judge_model_dir`).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from inference.triton_server import TritonProcess
from inference.versions.repository import repository_build
from labelling.models import GeneratorVersion
from labelling.versions.generators import selectors as generator_selectors
from shaping_core.weights import GENERATOR_MODEL, SHIPPED_ONNX_DIR

_onnx_dir = generator_selectors.generator_version_dir


def base_dir() -> Path:
    """The base model's ONNX folder (what a request gets when no version is current or known)."""
    try:
        base = generator_selectors.generator_version_base()
    except DatabaseError:  # file-mode commands before `migrate`
        base = None
    if base is not None:
        return _onnx_dir(base)
    return Path(settings.GENERATOR_MODEL_DIR or GeneratorVersion.path(SHIPPED_ONNX_DIR))


def served_dirs(model_name: str = GENERATOR_MODEL) -> dict[int, Path]:
    """{version number: ONNX folder} of every ready version."""
    return {v.number: _onnx_dir(v) for v in generator_selectors.generator_versions_ready(model_name)}


def repository_sync() -> Path:
    """Write the generated repository for the versions the rows say are ready."""
    return repository_build(Path(settings.TRITON_REPOSITORY), served_dirs())


def managed_server() -> TritonProcess:
    """The bundled tritonserver on the generated repository, on the port TRITON_URL names."""
    port = int(settings.TRITON_URL.rpartition(":")[2] or 8001)
    return TritonProcess(
        work_dir=settings.DATA_DIR / "triton",
        grpc_port=port,
        metrics_port=port + 1,
        generator_dir=settings.GENERATOR_MODEL_DIR,
        judge_dir=generator_selectors.judge_model_dir(),
        model_repository=repository_sync(),
        explicit=True,
    )


def current_version() -> int | None:
    """The current version's number: what a generate request that names no version is
    answered by (never simply the newest one Triton serves). One indexed query per request,
    next to a generation that takes far longer; no cache, so a rollback applies at once."""
    try:
        current = generator_selectors.generator_version_current()
    except DatabaseError:  # no database yet (`manage.py generate` before `migrate`): the server's choice
        return None
    return current.number if current else None


def version_dir(number: int) -> Path:
    """The ONNX folder of a ready version (the in-process backend loads it)."""
    version = generator_selectors.generator_versions_ready().filter(number=number).first()
    if version is None:
        raise LookupError(f"version {number} of {GENERATOR_MODEL} is not ready")
    return _onnx_dir(version)
