"""A trained checkpoint becomes a served version: converted with the same onnxruntime-genai
builder `build_model --from-hf` uses, checked with a short generation in this process, then
written as a version folder of the generator in Triton's repository, loaded without a restart
and checked again through Triton, before the row says ready.

Nothing is half-registered: a conversion or a check that fails removes the version folder
again (Triton unloads it), marks the version failed with the reason, and the versions already
served keep serving.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from django.conf import settings

from inference import build_model
from inference.backends.base import GenerateRequest
from inference.engine import SamplingParams, open_engine
from labelling.models import GeneratorVersion
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.training import services as training_services
from shaping_core.weights import weights_sha256

log = logging.getLogger(__name__)

CHECK_MESSAGES = [{"role": "user", "content": "Say hello."}]
CHECK_TOKENS = 4


class ExportFailed(Exception):
    """Conversion, load or check generation failed; the text says which and why."""


def export(
    version: GeneratorVersion, hf_dir: Path, *, trained_s: float | None = None, trainer: dict | None = None
) -> GeneratorVersion:
    """Convert, check, serve; the version ends ready (its timings in config["export"], and what the
    trainer reported, its device and peak GPU memory, in config["trainer"])."""
    started = time.monotonic()
    version = training_services.version_status(version=version, status=GeneratorVersion.Status.CONVERTING)
    root = training_services.version_root(version.model_name, version.number)
    onnx_dir = root / "onnx"
    try:
        convert(
            hf_dir,
            onnx_dir,
            context_length=_context_length(version.parent),
            build=_build(version.parent),
            engine=_engine(version.parent),
        )
        converted = time.monotonic()
        check_inprocess(onnx_dir)
        checked = time.monotonic()
        if settings.INFERENCE_BACKEND == "triton":
            serve(version.model_name, version.number, onnx_dir)
        served = time.monotonic()
    except ExportFailed as exc:
        training_services.version_status(version=version, status=GeneratorVersion.Status.FAILED, error=str(exc))
        raise
    timings = {
        "convert_s": round(converted - started, 2),
        "check_s": round(checked - converted, 2),
        "serve_s": round(served - checked, 2),
        "total_s": round(served - started, 2),
        **({"train_s": round(trained_s, 2)} if trained_s is not None else {}),
    }
    return training_services.version_status(
        version=version,
        status=GeneratorVersion.Status.READY,
        onnx_dir=str(onnx_dir),
        hf_dir=str(hf_dir),
        weights_sha256=weights_sha256(onnx_dir),
        config={**version.config, "export": timings, **({"trainer": trainer} if trainer else {})},
    )


def _genai_config(parent: GeneratorVersion | None) -> dict:
    if parent is None:
        return {}
    try:
        config = json.loads((generator_selectors.generator_version_dir(parent) / "genai_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _context_length(parent: GeneratorVersion | None) -> int | None:
    try:
        return _genai_config(parent)["model"]["context_length"]
    except (KeyError, TypeError):
        return None


def _engine(parent: GeneratorVersion | None) -> dict | None:
    """The parent's engine section (a paged-attention build's cache size and batch), which a
    version trained from it keeps: the builder's default takes 60% of the GPU's memory for each
    version, and Triton serves a version beside its parent."""
    engine = _genai_config(parent).get("engine")
    return engine if isinstance(engine, dict) else None


def _build(parent: GeneratorVersion | None) -> dict:
    """How the parent was built (its BUILD.json: precision, target, paged attention): a version is
    served as its parent is, so a GPU host's fp16 CUDA export trains into another one."""
    if parent is None:
        return {}
    return build_model.build_record(generator_selectors.generator_version_dir(parent))


def convert(
    hf_dir: Path,
    onnx_dir: Path,
    *,
    context_length: int | None = None,
    build: dict | None = None,
    engine: dict | None = None,
) -> None:
    """HF folder -> ONNX folder (built as `build` says: the parent's precision, target and paged
    attention; fp32 for the CPU when it says nothing; with the parent's `engine` section where the
    build has one), written beside and renamed into place once complete."""
    if not (hf_dir / "config.json").is_file():
        raise ExportFailed(f"the trained weights are incomplete: {hf_dir} has no config.json")
    build = build or {}
    target = build.get("target") if build.get("target") in build_model.TARGETS else "cpu"
    paged = bool(build.get("paged_attention")) and target == "cuda"
    precision = build.get("precision") if isinstance(build.get("precision"), str) else None
    staging = onnx_dir.with_name(onnx_dir.name + ".converting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        build_model.convert(hf_dir, staging, onnx_dir.parent / "builder-cache", target, paged, precision=precision)
        build_model.finish_config(staging, context_length)
        if engine is not None:
            _keep_engine(staging, engine)
        build_model.write_record(
            staging,
            {
                "from_hf": str(hf_dir),
                "precision": precision or build_model.TARGETS[target][0],
                "target": target,
                "paged_attention": paged,
            },
        )
        chat_template = hf_dir / "chat_template.jinja"
        if chat_template.is_file() and not (staging / "chat_template.jinja").exists():
            shutil.copy2(chat_template, staging / "chat_template.jinja")
    except build_model.BuildError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportFailed(f"converting {hf_dir} failed: {exc}") from exc
    finally:
        shutil.rmtree(onnx_dir.parent / "builder-cache", ignore_errors=True)
    shutil.rmtree(onnx_dir, ignore_errors=True)
    staging.rename(onnx_dir)


def _keep_engine(folder: Path, engine: dict) -> None:
    path = folder / "genai_config.json"
    config = json.loads(path.read_text())
    if "engine" in config:
        config["engine"] = engine
        path.write_text(json.dumps(config, indent=4) + "\n")


def _check(generate, where: str) -> None:
    try:
        completions = generate(
            GenerateRequest(messages=CHECK_MESSAGES, params=SamplingParams(max_tokens=CHECK_TOKENS, seed=0))
        )
    except Exception as exc:
        raise ExportFailed(f"the check generation {where} failed: {type(exc).__name__}: {exc}") from exc
    if not completions or completions[0].completion_tokens < 1:
        raise ExportFailed(f"the check generation {where} produced no token")


def check_inprocess(onnx_dir: Path) -> None:
    """Load the converted model here and decode a few tokens."""
    try:
        engine = open_engine(onnx_dir)
    except Exception as exc:
        raise ExportFailed(f"the converted model in {onnx_dir} does not load: {type(exc).__name__}: {exc}") from exc
    try:
        _check(
            lambda request: engine.generate(messages=request.messages, params=request.params), f"with {onnx_dir.name}"
        )
    finally:
        engine.close()  # its scheduler thread would keep the model in memory


def serve(model_name: str, number: int, onnx_dir: Path) -> None:
    """Add the version folder to Triton's repository, load it, and check it answers; on any
    failure the folder goes again and Triton unloads it."""
    from inference.backends.triton import TritonBackend
    from inference.triton_server import model_load
    from inference.versions.repository import repository_add_version, repository_remove_version

    repository = Path(settings.TRITON_REPOSITORY)
    repository_add_version(repository, number, onnx_dir)
    backend = TritonBackend(settings.TRITON_URL, timeout_s=settings.VERSION_LOAD_TIMEOUT_S)
    try:
        model_load(settings.TRITON_URL, model_name, [number], timeout_s=settings.VERSION_LOAD_TIMEOUT_S)
        _check(
            lambda request: backend.generate(_versioned(request, number)), f"through Triton ({model_name} v{number})"
        )
    except Exception as exc:
        repository_remove_version(repository, number)
        try:
            model_load(settings.TRITON_URL, model_name, [], timeout_s=settings.VERSION_LOAD_TIMEOUT_S)
        except Exception:
            log.exception("unloading %s v%s after its failed check", model_name, number)
        if isinstance(exc, ExportFailed):
            raise
        raise ExportFailed(f"Triton could not load {model_name} v{number}: {exc}") from exc
    finally:
        backend.close()


def _versioned(request: GenerateRequest, number: int) -> GenerateRequest:
    request.model_version = number
    return request
