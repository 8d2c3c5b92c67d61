"""docs/loop.md's script, run as written: over HTTP against a real web server, a huey consumer,
a training consumer and a tritonserver on the generated repository, it imports, generates,
reviews, builds, trains, evaluates and makes the new version current."""

from pathlib import Path

import pytest
from huey.contrib.djhuey import HUEY

from inference.train_queue import TRAIN_HUEY
from labelling.access import tokens
from labelling.models import Evaluation, Generation, GeneratorVersion, Group, Judgment, PipelineRun
from labelling.versions.evaluation import selectors as evaluation_selectors
from tests.doc_blocks import python_block
from tests.pipelines.conftest import Consumer, run_script, worker_env
from tests.training.conftest import TRAIN_WORKER

DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.timeout(600)
def test_the_loop_script_trains_a_version_that_wins_and_makes_it_current(
    versioned_triton, live_server, admin_user, settings, tmp_path
):
    env = {**worker_env(versioned_triton.url), "TRITON_REPOSITORY": str(settings.TRITON_REPOSITORY)}
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    HUEY.flush()
    TRAIN_HUEY.flush()
    logs = [tmp_path / "huey.log", tmp_path / "train.log"]
    workers = [Consumer(env, logs[0]).start(), Consumer(env, logs[1], TRAIN_WORKER).start()]
    try:
        out = run_script(
            python_block(DOCS / "loop.md"),
            url=live_server.url,
            token=tokens.token_create(user=admin_user, name="loop")[1],
            cwd=tmp_path,
            logs=logs,
        )
    finally:
        for worker in workers:
            worker.stop()
    print(out)  # the figures, for the record (pytest -s)

    generate = PipelineRun.objects.get(kind="generate", prompt_set__slug="harbour-days")
    assert (generate.status, generate.done_items) == ("succeeded", 20)
    assert Generation.objects.filter(group__run=generate).count() == 80
    # Every group reviewed once, by the script's user, every completion scored.
    groups = Group.objects.filter(run=generate)
    assert groups.count() == 20 and set(groups.values_list("review_count", flat=True)) == {1}
    human = Judgment.objects.filter(source="human", generation__group__run=generate)
    assert human.count() == 80 and set(human.values_list("reviewer", flat=True)) == {admin_user.pk}
    v2 = GeneratorVersion.objects.get(number=2)
    assert (v2.status, v2.method, v2.parent.number, v2.dataset_version.row_count) == ("ready", "grpo", 1, 13)
    assert v2.is_current and not GeneratorVersion.objects.get(number=1).is_current
    evaluation = Evaluation.objects.get()
    assert (evaluation.candidate, evaluation.baseline.number, evaluation.result["prompts"]) == (v2, 1, 7)
    assert evaluation_selectors.verdict(evaluation.result) == "better"
    win = evaluation.result["win_rate"]
    assert out.splitlines() == [
        f"generate run {generate.pk}: succeeded, 20 prompts",
        "reviewed 20 groups",
        "dataset harbour-days@1: 13 prompts to train on",
        f"train run {v2.train_run_id}: succeeded, version 2 ready",
        f"evaluation {evaluation.pk}: v2 against v1 on 7 held-out prompts: "
        f"win rate {win['estimate']:.3f} [{win['low']:.3f}, {win['high']:.3f}]",
        "v2 is better: now current",
    ]
