"""Pick the backend the settings ask for; one instance per process."""

from __future__ import annotations

import threading

from inference.backends.base import Backend

_backend: Backend | None = None
_lock = threading.Lock()


def make_backend(name: str | None = None) -> Backend:
    from django.conf import settings

    name = name or settings.INFERENCE_BACKEND
    if name == "triton":
        from inference.backends.triton import TritonBackend

        return TritonBackend(settings.TRITON_URL, timeout_s=settings.INFERENCE_TIMEOUT_S)
    if name == "inprocess":
        from inference.backends.inprocess import InProcessBackend

        return InProcessBackend(settings.GENERATOR_MODEL_DIR, settings.JUDGE_MODEL_DIR)
    raise ValueError(f"unknown inference backend {name!r} (triton or inprocess)")


def get_backend() -> Backend:
    global _backend
    with _lock:
        if _backend is None:
            _backend = make_backend()
        return _backend


def reset_backend() -> None:
    """Forget the shared backend (settings changed, tests)."""
    global _backend
    with _lock:
        if _backend is not None:
            _backend.close()
        _backend = None
