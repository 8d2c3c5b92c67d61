"""Which versions Triton is given, from the rows: ready ones only, version 1 from its row unless
GENERATOR_MODEL_DIR replaces it, and the current one for a request that names none."""

import io

import pytest
from django.core.management import call_command

from inference.versions import served as served_versions
from inference.versions.repository import repository_versions
from labelling.models import GeneratorVersion
from labelling.versions.generators import services as generator_services
from shaping_core.weights import SHIPPED_ONNX_DIR


def test_the_repository_holds_the_ready_versions_and_a_request_without_one_gets_the_current(db, settings, tmp_path):
    settings.TRITON_REPOSITORY = tmp_path / "repository"
    GeneratorVersion.objects.create(number=2, parent_id=1, status="ready", onnx_dir=str(tmp_path / "v2"))
    GeneratorVersion.objects.create(number=3, parent_id=1, status="failed", onnx_dir=str(tmp_path / "v3"))
    GeneratorVersion.objects.create(number=4, parent_id=1, status="training", onnx_dir=str(tmp_path / "v4"))
    out = io.StringIO()
    call_command("triton", "--write-repository", stdout=out)
    assert out.getvalue().strip() == str(settings.TRITON_REPOSITORY)
    shipped = settings.BASE_DIR / SHIPPED_ONNX_DIR
    assert repository_versions(settings.TRITON_REPOSITORY) == {1: shipped, 2: tmp_path / "v2"}
    assert served_versions.current_version() == 1
    generator_services.generator_version_make_current(version=GeneratorVersion.objects.get(number=2))
    assert served_versions.current_version() == 2  # no cache: a rollback applies to the next request
    GeneratorVersion.objects.filter(number=2).update(status="retired", is_current=False)
    served_versions.repository_sync()
    assert sorted(repository_versions(settings.TRITON_REPOSITORY)) == [1]


def test_generator_model_dir_replaces_version_1s_weights_and_the_judge_follows(db, settings, tmp_path):
    from labelling.versions.generators.selectors import judge_model_dir

    settings.TRITON_REPOSITORY = tmp_path / "repository"
    settings.GENERATOR_MODEL_DIR = tmp_path / "gpu-export"
    served_versions.repository_sync()
    assert repository_versions(settings.TRITON_REPOSITORY) == {1: tmp_path / "gpu-export"}
    assert judge_model_dir() == tmp_path / "gpu-export"
    settings.JUDGE_MODEL_DIR = tmp_path / "judge"
    assert judge_model_dir() == tmp_path / "judge"


def test_writing_the_repository_before_migrate_says_so(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    env.pop("SQLITE_PATH", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "triton", "--write-repository"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1 and "run `manage.py migrate` first" in done.stderr
    assert "Traceback" not in done.stderr


def test_version_1_replaced_by_generator_model_dir_trains_from_the_weights_built_beside_it(db, settings, tmp_path):
    """A GPU host's export (GENERATOR_MODEL_DIR) serves as version 1: a train run from version 1
    trains its Hugging Face weights (`build_model --keep-hf` writes them to its hf/), never the
    row's, which are another model's; without them the request is refused, naming the folder."""
    from django.core.exceptions import ValidationError

    from labelling.versions.generators.selectors import generator_version_hf_dir
    from labelling.versions.training import services as training_services

    first = GeneratorVersion.objects.get(number=1)
    assert generator_version_hf_dir(first) == GeneratorVersion.path(first.hf_dir)
    settings.GENERATOR_MODEL_DIR = tmp_path / "gpu-export"
    assert generator_version_hf_dir(first) == tmp_path / "gpu-export" / "hf"
    trained = GeneratorVersion.objects.create(number=2, parent=first, method="grpo", status="ready", hf_dir="v2/hf")
    assert generator_version_hf_dir(trained) == GeneratorVersion.path("v2/hf")  # only version 1 is replaced

    with pytest.raises(ValidationError) as refused:
        training_services.train_start(dataset_version=_grpo_dataset(settings, tmp_path), method="grpo", from_version=1)
    assert refused.value.message_dict == {
        "from_version": [f"version 1 has no Hugging Face weights to train from ({tmp_path / 'gpu-export' / 'hf'})"]
    }


def _grpo_dataset(settings, tmp_path):
    import hashlib
    import json

    from labelling.models import DatasetVersion

    settings.MEDIA_ROOT = tmp_path / "media"
    path = settings.MEDIA_ROOT / "datasets" / "gpu" / "v1-grpo_prompts.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": "p0", "prompt": [{"role": "user", "content": "Hello?"}]}) + "\n")
    rubric = {"criteria": [{"key": "name", "scale_min": 0, "scale_max": 1, "rule": {"kind": "regex", "pattern": "A"}}]}
    return DatasetVersion.objects.create(
        dataset="gpu",
        number=1,
        kind="grpo_prompts",
        row_count=1,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        file=str(path.relative_to(settings.MEDIA_ROOT)),
        reward_policy={"rubric_spec": rubric},
    )


def test_a_version_trained_from_a_retired_parent_is_built_as_that_parent_was(db, settings, tmp_path):
    """Training may start from a retired version: its build record is read from its own folder,
    not from the ready versions Triton serves."""
    import json

    from inference.versions import export

    folder = tmp_path / "v2-onnx"
    folder.mkdir()
    (folder / "BUILD.json").write_text(json.dumps({"target": "cuda", "precision": "fp16", "paged_attention": True}))
    first = GeneratorVersion.objects.get(number=1)
    retired = GeneratorVersion.objects.create(
        number=2, parent=first, method="grpo", status="retired", onnx_dir=str(folder)
    )
    assert export._build(retired) == {"target": "cuda", "precision": "fp16", "paged_attention": True}
    assert export._build(None) == {}
