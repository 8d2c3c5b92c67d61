"""Runs and generator versions with real workers: a generate run records the exact version on
every completion; a version retired between start and execution fails the run saying so; two
concurrent make-currents leave exactly one version current."""

import pytest

from inference import tasks
from inference.backends.triton import TritonBackend
from labelling.models import Generation, GeneratorVersion, PipelineRun
from labelling.runs import services as run_services
from labelling.versions.generators import services as generator_services
from tests.factories import generate_run
from tests.review.test_races import at_once


class Untouchable:
    """A backend that must not be reached: the run fails before any item."""

    name = "untouchable"

    def generate(self, request, on_delta=None):
        raise AssertionError("a run on a retired version generated")

    def judge(self, request):
        raise AssertionError("a run on a retired version judged")

    def close(self):
        pass


def test_a_generate_run_records_version_1_on_every_completion(story, triton_url):
    character, prompt_set, rubric = story(2)
    run = generate_run(character=character, prompt_set=prompt_set, group_size=2)
    assert run.params["generator_version"] == 1
    backend = TritonBackend(triton_url, timeout_s=60)
    try:
        assert tasks.execute(run.pk, backend=backend) == PipelineRun.Status.SUCCEEDED
    finally:
        backend.close()
    v1 = GeneratorVersion.objects.get(number=1)
    made = Generation.objects.filter(group__run=run).select_related("producer")
    assert made.count() == 4
    assert {(g.producer.model_name, g.producer.model_version, g.producer.generator_id) for g in made} == {
        ("qwen3", "1", v1.pk)
    }


def test_a_version_retired_between_start_and_execution_fails_the_run_saying_so(story):
    character, prompt_set, _ = story(1)
    v1 = GeneratorVersion.objects.get(number=1)
    v2 = GeneratorVersion.objects.create(model_name="qwen3", number=2, parent=v1, status="ready", method="sft")
    run, _ = run_services.run_start(
        kind="generate",
        character=character,
        prompt_set=prompt_set,
        params={"generator_version": 2},
        enqueue=False,
    )
    generator_services.generator_version_retire(version=v2)
    assert tasks.execute(run.pk, backend=Untouchable()) == "failed to start"
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.FAILED
    assert run.errors[-1]["error"] == "GeneratorUnavailable"
    assert run.errors[-1]["message"] == "version 2 of qwen3 is retired, not ready"
    assert not Generation.objects.filter(group__run=run).exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_make_currents_leave_exactly_one_current():
    v1 = GeneratorVersion.objects.get(number=1)
    v2 = GeneratorVersion.objects.create(model_name="qwen3", number=2, parent=v1, status="ready")
    v3 = GeneratorVersion.objects.create(model_name="qwen3", number=3, parent=v1, status="ready")
    for _ in range(8):
        results = at_once(
            lambda: generator_services.generator_version_make_current(version=v2),
            lambda: generator_services.generator_version_make_current(version=v3),
        )
        assert all(isinstance(r, GeneratorVersion) for r in results), results
        current = list(GeneratorVersion.objects.filter(is_current=True).values_list("number", flat=True))
        assert len(current) == 1 and current[0] in (2, 3), current
        generator_services.generator_version_make_current(version=v1)
