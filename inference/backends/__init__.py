"""Pick the backend the settings ask for; one instance per process.

`generator_dirs` (version number -> that version's ONNX folder) is how the in-process
backend serves requests that name a generator version; Triton ignores it (the server serves
the versions of its repository, inference/model_repository.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from inference.backends.base import Backend

_backend: Backend | None = None
_lock = threading.Lock()


def make_backend(name: str | None = None, *, generator_dirs: Callable[[int], Path] | None = None) -> Backend:
    """The backend the settings name. Generator versions come from the rows (inference.served_versions):
    a request that names no version gets the current one, and the in-process backend finds a
    version's ONNX folder there unless `generator_dirs` says otherwise."""
    from django.conf import settings

    from inference import served_versions

    name = name or settings.INFERENCE_BACKEND
    if name == "triton":
        from inference.backends.triton import TritonBackend

        return TritonBackend(
            settings.TRITON_URL, timeout_s=settings.INFERENCE_TIMEOUT_S, default_version=served_versions.current_version
        )
    if name == "inprocess":
        from inference.backends.inprocess import InProcessBackend

        return InProcessBackend(
            settings.GENERATOR_MODEL_DIR,
            settings.JUDGE_MODEL_DIR,
            generator_dirs=generator_dirs or served_versions.version_dir,
            default_version=served_versions.current_version,
        )
    raise ValueError(f"unknown inference backend {name!r} (triton or inprocess)")


def get_backend(*, generator_dirs: Callable[[int], Path] | None = None) -> Backend:
    """The shared backend; `generator_dirs` goes to it when this call is the one that makes it."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = make_backend(generator_dirs=generator_dirs)
        return _backend


def reset_backend() -> None:
    """Forget the shared backend (settings changed, tests)."""
    global _backend
    with _lock:
        if _backend is not None:
            _backend.close()
        _backend = None
