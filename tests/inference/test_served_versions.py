"""Several versions of the generator served side by side: the generated model repository, a
tritonserver that loads a new version without a restart, requests that name their version."""

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from inference.backends.base import GenerateRequest
from inference.backends.inprocess import InProcessBackend
from inference.backends.triton import TritonBackend
from inference.engine import SamplingParams
from inference.errors import ModelNotReady
from inference.triton_server import (
    ModelLoadError,
    TritonProcess,
    TritonStartError,
    free_port,
    model_load,
    model_versions_ready,
)
from inference.triton_worker import model_dir_for
from inference.versions.repository import (
    SOURCE,
    repository_add_version,
    repository_build,
    repository_remove_version,
    repository_versions,
)
from tests.triton_fixture import TINY_MODEL, start_triton

MESSAGES = [{"role": "user", "content": "Which light is that?"}]


def copy_of_tiny(target: Path, *, broken: bool = False) -> Path:
    shutil.copytree(TINY_MODEL, target, ignore=shutil.ignore_patterns("hf"))
    if broken:
        (target / "model.onnx").write_bytes(b"this is not an ONNX graph")
    return target


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


# --- the generated repository, no server -------------------------------------------------


def test_it_writes_the_judge_as_shipped_and_a_folder_per_version(tmp_path):
    v2 = copy_of_tiny(tmp_path / "v2")
    target = repository_build(tmp_path / "repo", {1: TINY_MODEL, 2: v2})

    assert files_of(target / "judge") == files_of(SOURCE / "judge")
    for n, onnx_dir in ((1, TINY_MODEL), (2, v2)):
        folder = target / "qwen3" / str(n)
        assert (folder / "model.py").read_bytes() == (SOURCE / "qwen3" / "1" / "model.py").read_bytes()
        assert (folder / "model_dir").read_text().strip() == str(onnx_dir.resolve())
    assert repository_versions(target) == {1: TINY_MODEL.resolve(), 2: v2.resolve()}
    assert not [p for p in (target / "qwen3").iterdir() if p.name.startswith(".")], "no staging left behind"


@pytest.mark.parametrize(("name", "kind"), [("config.pbtxt", "KIND_CPU"), ("configs/gpu.pbtxt", "KIND_GPU")])
def test_each_generator_config_serves_every_version_and_keeps_the_rest(tmp_path, name, kind):
    target = repository_build(tmp_path / "repo", {1: TINY_MODEL})
    source = (SOURCE / "qwen3" / name).read_text()
    generated = (target / "qwen3" / name).read_text()

    assert generated.count("version_policy: { all { } }") == 1
    assert f"kind: {kind}" in generated
    settings = [line for line in source.splitlines() if line and not line.startswith("#")]
    assert [line for line in generated.splitlines() if line in settings] == settings
    assert f"Generated from triton_models/qwen3/{name}" in generated.splitlines()[0]


def test_building_again_changes_nothing_and_drops_versions_no_longer_listed(tmp_path):
    v2 = copy_of_tiny(tmp_path / "v2")
    target = repository_build(tmp_path / "repo", {1: TINY_MODEL, 2: v2})
    stamps = {p: p.stat().st_mtime_ns for p in target.rglob("*")}

    repository_build(target, {1: TINY_MODEL, 2: v2})
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == stamps

    repository_build(target, {1: TINY_MODEL})
    assert repository_versions(target) == {1: TINY_MODEL.resolve()}
    assert not (target / "qwen3" / "2").exists()


def test_adding_a_version_again_repoints_it_and_removing_it_twice_is_harmless(tmp_path):
    target = repository_build(tmp_path / "repo", {1: TINY_MODEL})
    v2 = copy_of_tiny(tmp_path / "v2")
    assert repository_add_version(target, 2, TINY_MODEL) == target / "qwen3" / "2"
    repository_add_version(target, 2, v2)
    assert repository_versions(target)[2] == v2.resolve()

    assert repository_remove_version(target, 2) is True
    assert repository_remove_version(target, 2) is False
    assert list(repository_versions(target)) == [1]


def test_a_relative_onnx_dir_is_written_absolute(tmp_path, monkeypatch):
    copy_of_tiny(tmp_path / "weights")
    monkeypatch.chdir(tmp_path)
    target = repository_build(tmp_path / "repo", {3: Path("weights")})
    assert (target / "qwen3" / "3" / "model_dir").read_text().strip() == str((tmp_path / "weights").resolve())


@pytest.mark.parametrize("number", [0, -1, True, "2"])
def test_a_version_is_a_whole_number_from_one(tmp_path, number):
    with pytest.raises(ValueError, match="whole number"):
        repository_build(tmp_path / "repo", {number: TINY_MODEL})


def test_a_version_serves_its_model_dir_file_before_the_environment_and_the_parameter(tmp_path, monkeypatch):
    target = repository_build(tmp_path / "repo", {2: tmp_path / "v2"})
    args = {"model_repository": str(target / "qwen3"), "model_version": "2"}
    params = {"model_dir": "inference/weights/tiny-qwen3"}
    monkeypatch.setenv("SHAPING_GENERATOR_MODEL_DIR", str(tmp_path / "from-env"))

    assert model_dir_for(args, "generator", params) == (tmp_path / "v2").resolve()
    assert model_dir_for({**args, "model_version": "1"}, "generator", params) == (tmp_path / "from-env").resolve()
    monkeypatch.delenv("SHAPING_GENERATOR_MODEL_DIR")
    # Relative to the project root, wherever the repository is.
    assert model_dir_for({**args, "model_version": "1"}, "generator", params) == TINY_MODEL


def test_a_generated_repository_gets_explicit_model_control_and_the_shipped_one_does_not(tmp_path):
    shipped = TritonProcess(work_dir=tmp_path / "a").command()
    assert not any(arg.startswith("--model-control-mode") for arg in shipped)

    generated = TritonProcess(work_dir=tmp_path / "b", model_repository=tmp_path / "repo").command()
    assert "--model-control-mode=explicit" in generated
    assert {"--load-model=qwen3", "--load-model=judge"} <= set(generated)


# --- versions in process -----------------------------------------------------------------


def generate(backend, version, **params):
    params = {"max_tokens": 6, "seed": 11, **params}
    request = GenerateRequest(messages=MESSAGES, params=SamplingParams(**params), model_version=version)
    (completion,) = backend.generate(request)
    return completion


def test_in_process_a_resolver_picks_each_versions_model_and_an_unknown_one_is_refused(tmp_path):
    dirs = {1: TINY_MODEL, 2: copy_of_tiny(tmp_path / "v2"), 3: copy_of_tiny(tmp_path / "v3", broken=True)}
    backend = InProcessBackend(TINY_MODEL, generator_dirs=lambda n: dirs[n])
    try:
        assert generate(backend, 2).text == generate(backend, 1).text == generate(backend, None).text
        assert set(backend._engines) == {TINY_MODEL, dirs[2]}  # one engine per folder
        with pytest.raises(ModelNotReady, match="version 9 of qwen3 is not loaded"):
            generate(backend, 9)
        with pytest.raises(ModelNotReady, match="version 3 of qwen3 failed to load"):
            generate(backend, 3)
    finally:
        backend.close()


def test_in_process_without_a_resolver_only_version_one_is_served():
    backend = InProcessBackend(TINY_MODEL)
    try:
        assert generate(backend, 1).text == generate(backend, None).text
        with pytest.raises(ModelNotReady, match="version 2 of qwen3 is not loaded"):
            generate(backend, 2)
    finally:
        backend.close()


# --- a real server: load, unload, refuse ---------------------------------------------------


@pytest.fixture(scope="module")
def versioned_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    repository = repository_build(root / "repository", {1: TINY_MODEL})
    server = start_triton(root / "work", model_repository=repository)
    yield server, repository, root
    server.stop()


@pytest.fixture
def served(versioned_server):
    """The server with version 1 only, as each test starts."""
    server, repository, root = versioned_server
    if not server.alive():
        server.start(timeout_s=120)
    repository_build(repository, {1: TINY_MODEL})
    model_load(server.url, "qwen3", [1])
    backend = TritonBackend(server.url, timeout_s=60)
    yield server, repository, root, backend
    backend.close()


@pytest.mark.triton
def test_a_generated_repository_serves_the_judge_and_version_one_at_start(served):
    server, _, _, backend = served
    assert backend.health().ready
    assert model_versions_ready(server.url, "qwen3") == [1]
    assert model_versions_ready(server.url, "judge") == [1]
    assert generate(backend, 1).completion_tokens >= 1


@pytest.mark.triton
def test_a_new_version_loads_without_a_restart_while_version_one_keeps_answering(served, tmp_path):
    server, repository, _, backend = served
    pid = server.process.pid
    v2 = copy_of_tiny(tmp_path / "v2")
    repository_add_version(repository, 2, v2)

    answered, failed, stop = [], [], threading.Event()

    def keep_asking() -> None:
        own = TritonBackend(server.url, timeout_s=60)
        while not stop.is_set():
            try:
                generate(own, 1)
                answered.append(time.monotonic())
            except Exception as exc:  # every one must answer: collected, asserted below
                failed.append(exc)
        own.close()

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        while not answered:
            time.sleep(0.01)
        started = time.monotonic()
        model_load(server.url, "qwen3", [1, 2])
        ended = time.monotonic()
    finally:
        stop.set()
        asker.join()

    assert not failed, failed[:3]
    assert any(started < t < ended for t in answered), "version 1 answered nothing while version 2 loaded"
    assert server.process.pid == pid and server.alive()
    assert model_versions_ready(server.url, "qwen3") == [1, 2]
    # Same weights, same seed: the same text from each version's own instance.
    assert generate(backend, 2).text == generate(backend, 1).text
    assert f"generator version 2 ready: {v2.resolve()}" in Path(server.log_path).read_text()


@pytest.mark.triton
def test_a_version_that_is_not_served_is_a_clear_error(served):
    _, _, _, backend = served
    with pytest.raises(ModelNotReady, match="version 9 of qwen3 is not loaded"):
        generate(backend, 9)
    assert generate(backend, 1).completion_tokens >= 1  # the stream recovers


@pytest.mark.triton
def test_removing_a_version_and_loading_again_unloads_only_that_version(served, tmp_path):
    server, repository, _, backend = served
    repository_add_version(repository, 2, copy_of_tiny(tmp_path / "v2"))
    model_load(server.url, "qwen3", [1, 2])
    assert generate(backend, 2).completion_tokens >= 1

    repository_remove_version(repository, 2)
    model_load(server.url, "qwen3", [1])

    assert model_versions_ready(server.url, "qwen3") == [1]
    with pytest.raises(ModelNotReady, match="version 2 of qwen3 is not loaded"):
        generate(backend, 2)
    assert generate(backend, 1).completion_tokens >= 1


@pytest.mark.triton
def test_a_version_that_fails_to_load_is_reported_and_version_one_keeps_serving(served, tmp_path):
    server, repository, _, backend = served
    broken = copy_of_tiny(tmp_path / "broken", broken=True)
    repository_add_version(repository, 3, broken)

    with pytest.raises(ModelLoadError, match=r"version 3 .*model\.onnx") as failure:
        model_load(server.url, "qwen3", [1, 3])
    assert "serving version(s): 1" in str(failure.value)
    assert "At:" not in str(failure.value)  # the stub's traceback is left in the server's log

    assert model_versions_ready(server.url, "qwen3") == [1]
    assert generate(backend, 1).completion_tokens >= 1
    with pytest.raises(ModelNotReady, match="version 3 of qwen3 is not loaded"):
        generate(backend, 3)

    repository_remove_version(repository, 3)  # what a caller does with a version that failed
    model_load(server.url, "qwen3", [1])
    assert backend.health().ready  # a version that once failed leaves no mark on readiness


@pytest.mark.triton
def test_a_listed_version_missing_from_the_repository_is_reported_at_once(served):
    server, _, _, _ = served
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="qwen3 has no version 5"):
        model_load(server.url, "qwen3", [1, 5], timeout_s=60)
    assert time.monotonic() - started < 10


@pytest.mark.triton
def test_a_restarted_server_serves_every_version_of_its_repository(served, tmp_path):
    server, repository, _, backend = served
    genai = json.loads((TINY_MODEL / "genai_config.json").read_text())
    v2 = copy_of_tiny(tmp_path / "v2")
    (v2 / "genai_config.json").write_text(json.dumps({**genai, "search": {**genai["search"], "max_length": 2048}}))
    repository_add_version(repository, 2, v2)

    server.stop()
    server.start(timeout_s=120)

    assert model_versions_ready(server.url, "qwen3") == [1, 2]
    assert generate(backend, 2).completion_tokens >= 1


@pytest.mark.triton
def test_a_broken_version_at_start_is_named_and_mended_without_a_restart(tmp_path):
    broken = copy_of_tiny(tmp_path / "broken", broken=True)
    repository = repository_build(tmp_path / "repository", {1: TINY_MODEL, 3: broken})
    server = TritonProcess(
        work_dir=tmp_path / "work", grpc_port=free_port(), metrics_port=free_port(), model_repository=repository
    )
    server.start(wait=False)
    try:
        # Triton loads a model's versions all or nothing at start: version 1 does not serve either.
        with pytest.raises(TritonStartError, match=r"could not load qwen3 \(version 3: .*model\.onnx"):
            server.wait_ready(60)
        assert server.alive(), "the server stays up for the judge, and for a mended repository"
        assert model_versions_ready(server.url, "judge") == [1]

        repository_remove_version(repository, 3)
        model_load(server.url, "qwen3", [1])
        server.wait_ready(30)
        backend = TritonBackend(server.url, timeout_s=30)
        assert backend.health().ready
        assert generate(backend, 1).completion_tokens >= 1
        backend.close()
    finally:
        server.stop()
