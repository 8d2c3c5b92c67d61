"""Which versions Triton is given, from the rows: ready ones only, version 1 from its row unless
GENERATOR_MODEL_DIR replaces it, and the current one for a request that names none."""

import io

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
