"""Which versions Triton is given, from the rows: ready ones only, version 1 from
GENERATOR_MODEL_DIR, and the current one for a request that names none."""

import io

from django.core.management import call_command

from inference import served_versions
from inference.model_repository import repository_versions
from labelling.generators import services as generator_services
from labelling.models import GeneratorVersion


def test_the_repository_holds_the_ready_versions_and_a_request_without_one_gets_the_current(db, settings, tmp_path):
    settings.TRITON_REPOSITORY = tmp_path / "repository"
    GeneratorVersion.objects.create(number=2, parent_id=1, status="ready", onnx_dir=str(tmp_path / "v2"))
    GeneratorVersion.objects.create(number=3, parent_id=1, status="failed", onnx_dir=str(tmp_path / "v3"))
    GeneratorVersion.objects.create(number=4, parent_id=1, status="training", onnx_dir=str(tmp_path / "v4"))
    out = io.StringIO()
    call_command("triton", "--write-repository", stdout=out)
    assert out.getvalue().strip() == str(settings.TRITON_REPOSITORY)
    assert repository_versions(settings.TRITON_REPOSITORY) == {1: settings.GENERATOR_MODEL_DIR, 2: tmp_path / "v2"}
    assert served_versions.current_version() == 1
    generator_services.generator_version_make_current(version=GeneratorVersion.objects.get(number=2))
    assert served_versions.current_version() == 2  # no cache: a rollback applies to the next request
    GeneratorVersion.objects.filter(number=2).update(status="retired", is_current=False)
    served_versions.repository_sync()
    assert sorted(repository_versions(settings.TRITON_REPOSITORY)) == [1]
