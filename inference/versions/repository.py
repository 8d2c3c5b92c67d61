"""A generated Triton model repository that serves several versions of the generator side by side.

The shipped `triton_models/` serves one generator (version 1, its model dir from the config or
the environment). A generated repository (under DATA_DIR, never in git) holds:

    <target>/judge/                 a copy of triton_models/judge (model.py, config, configs/)
    <target>/qwen3/config.pbtxt     triton_models/qwen3's config + `version_policy: { all { } }`
    <target>/qwen3/configs/*.pbtxt  the same for each alternative config (gpu.pbtxt)
    <target>/qwen3/<n>/model.py     triton_models/qwen3/1/model.py, for each served version n
    <target>/qwen3/<n>/model_dir    a text file: the absolute path of version n's ONNX folder

`inference/triton_worker.py` reads `<n>/model_dir` when the version loads. A server started
with explicit model control on this repository (inference/triton_server.py) loads what is
here at start; after a change, `model_load` makes it serve the new set of versions.

Every write lands whole: files through a temporary name and a rename, a new version folder
likewise, so a load that reads the repository meanwhile never sees half a version.

Free of Django: the caller says which versions to serve and where their weights are.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import re
import shutil
import uuid
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "triton_models"
GENERATOR = "qwen3"
JUDGE = "judge"
MODEL_DIR_FILE = "model_dir"
VERSION_POLICY = "version_policy: { all { } }"
HEADER = (
    "# Generated from {source} by inference/versions/repository.py: edit that file.\n"
    "# Every numbered folder here is served (version_policy all); its model_dir file names the\n"
    "# ONNX folder of that version.\n"
)


def repository_build(target: Path, versions: dict[int, Path], source: Path = SOURCE) -> Path:
    """Make `target` a repository serving the judge and exactly `versions` ({n: ONNX folder})
    of the generator. Safe to run again: unchanged files are left alone, versions not listed
    are removed. Returns `target`."""
    numbers = {_number(n): Path(onnx_dir) for n, onnx_dir in versions.items()}
    target = Path(target)
    source = Path(source)
    _mirror(source / JUDGE, target / JUDGE)
    generator = target / GENERATOR
    configs = _generator_configs(source)
    for name, text in configs.items():
        _write(generator / name, text)
    for stale in (generator / "configs").glob("*.pbtxt"):
        if str(stale.relative_to(generator)) not in configs:
            stale.unlink()
    for n in set(repository_versions(target)) - set(numbers):
        repository_remove_version(target, n)
    for n, onnx_dir in sorted(numbers.items()):
        repository_add_version(target, n, onnx_dir, source=source)
    return target


def repository_add_version(target: Path, n: int, onnx_dir: Path, source: Path = SOURCE) -> Path:
    """Serve version `n` from `onnx_dir` (made absolute); replaces what version `n` pointed at.
    A new version folder appears whole (built under a hidden name, then renamed). Returns it."""
    n = _number(n)
    generator = Path(target) / GENERATOR
    model_py = (Path(source) / GENERATOR / "1" / "model.py").read_bytes()
    model_dir = f"{Path(onnx_dir).resolve()}\n".encode()
    folder = generator / str(n)
    if folder.is_dir():
        if _write_bytes(folder / "model.py", model_py):
            _compile(folder / "model.py", folder / "model.py")
        _write_bytes(folder / MODEL_DIR_FILE, model_dir)
        return folder
    generator.mkdir(parents=True, exist_ok=True)
    # Triton takes only folders named by a number for versions: the hidden one is ignored.
    staging = generator / f".adding-{n}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        (staging / "model.py").write_bytes(model_py)
        _compile(staging / "model.py", folder / "model.py")
        (staging / MODEL_DIR_FILE).write_bytes(model_dir)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def repository_remove_version(target: Path, n: int) -> bool:
    """Stop serving version `n` (at the next `model_load`). False if it was not there."""
    folder = Path(target) / GENERATOR / str(_number(n))
    if not folder.is_dir():
        return False
    gone = folder.with_name(f".removing-{folder.name}-{uuid.uuid4().hex}")
    folder.rename(gone)  # one step for a load that reads the repository meanwhile
    shutil.rmtree(gone, ignore_errors=True)
    return True


def repository_versions(target: Path) -> dict[int, Path]:
    """The versions `target` serves: {n: ONNX folder}, in order of n."""
    generator = Path(target) / GENERATOR
    if not generator.is_dir():
        return {}
    found = {}
    for folder in generator.iterdir():
        if folder.is_dir() and folder.name.isdigit() and (folder / MODEL_DIR_FILE).is_file():
            found[int(folder.name)] = Path((folder / MODEL_DIR_FILE).read_text().strip())
    return dict(sorted(found.items()))


# --- helpers -----------------------------------------------------------------------------


def _number(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a version is a whole number from 1, not {n!r}")
    return n


def _generator_configs(source: Path) -> dict[str, str]:
    """{path under the model folder: text} for config.pbtxt and each configs/*.pbtxt."""
    folder = source / GENERATOR
    paths = [folder / "config.pbtxt", *sorted((folder / "configs").glob("*.pbtxt"))]
    return {
        str(path.relative_to(folder)): _with_all_versions(path.read_text(), path.relative_to(source.parent))
        for path in paths
        if path.is_file()
    }


def _with_all_versions(config: str, origin: Path) -> str:
    """The config with every version served, under a header naming where it came from."""
    lines = [line for line in config.splitlines() if not re.match(r"\s*version_policy\s*:", line)]
    # After the leading comments and the settings that name the model: where a reader looks.
    at = next((i + 1 for i, line in enumerate(lines) if re.match(r"\s*max_batch_size\s*:", line)), len(lines))
    lines.insert(at, VERSION_POLICY)
    return HEADER.format(source=origin) + "\n".join(lines) + "\n"


def _mirror(source: Path, target: Path) -> None:
    """Make `target` hold the files of `source` (bytecode caches aside), and nothing else."""
    wanted = {
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.relative_to(source).parts
    }
    for relative in sorted(wanted):
        _write_bytes(target / relative, (source / relative).read_bytes())
    if target.is_dir():
        for path in sorted(target.rglob("*"), reverse=True):  # files before their folders
            relative = path.relative_to(target)
            if path.is_file() and relative not in wanted and "__pycache__" not in relative.parts:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _compile(model_py: Path, served_as: Path) -> None:
    """Write model.py's bytecode cache beside it now. Triton reloads a version whose folder
    changed since it loaded, and the Python-backend stub would otherwise write that cache on
    the first load: the next `model_load` would then load every version a second time. (A
    stub on another Python version still writes its own, once.)"""
    py_compile.compile(
        str(model_py),
        cfile=importlib.util.cache_from_source(str(model_py)),
        dfile=str(served_as),  # the name tracebacks show, not the staging one
        doraise=True,
    )


def _write(path: Path, text: str) -> bool:
    return _write_bytes(path, text.encode())


def _write_bytes(path: Path, data: bytes) -> bool:
    """Write only if different, through a temporary name and a rename. True if it wrote."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return True
