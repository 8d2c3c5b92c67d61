"""The training examples of the docs, run as written on the demo data: docs/training.md's commands
(build, train, evaluate on held-out prompts, blind A/B pairs) and its API body, and
docs/datasets.md's TRL script (GRPO on a grpo_prompts version, rewarded by the judge through a
real tritonserver)."""

import re
import subprocess
import sys

import pytest
from django.core.management import call_command

from labelling.access import tokens
from labelling.models import DatasetVersion, Evaluation, GeneratorVersion, PipelineRun
from tests.doc_blocks import DOCS, ROOT, code_blocks, manage_commands, python_block
from tests.pipelines.conftest import worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # the worker's heartbeat thread writes too


def test_the_training_examples_run_as_written(
    demo, media, settings, tmp_path, capsys, django_capture_on_commit_callbacks
):
    settings.INFERENCE_BACKEND = "inprocess"  # the export's check and the evaluation run here; no tritonserver
    settings.DATA_DIR = tmp_path
    start, evaluate, pairs = [manage_commands(b) for b in code_blocks(DOCS / "training.md", "sh")[:3]]
    assert [c[0] for c in start] == ["build_dataset", "build_dataset", "train", "train"]
    assert [c[0] for c in evaluate] == ["evaluate", "evaluate"]
    assert [c[0] for c in pairs] == ["evaluate"]
    with django_capture_on_commit_callbacks(execute=False):  # "queued": nobody consumes the queue here
        for command in start:
            call_command(*command)
        queued, waited = PipelineRun.objects.filter(kind="train").order_by("pk")
        assert queued.status == "queued" and queued.params["method"] == "grpo"
        assert waited.status == "succeeded" and waited.params["training"]["beta"] == 0.2
        v3 = GeneratorVersion.objects.get(train_run=waited)
        held_out = DatasetVersion.objects.get(dataset="aria", number=2)
        assert (v3.number, v3.status, v3.method, v3.parent.number) == (3, "ready", "dpo", 1)
        assert (v3.dataset_version, held_out.kind, held_out.filter["held_out"]) == (held_out, "dpo", 0.2)
        capsys.readouterr()

        # Did it win? On the prompts its dataset held out, against its parent; then on a prompt set.
        for command in evaluate:
            call_command(*command)
        waited_for, queued_evaluation = Evaluation.objects.order_by("pk")
        assert (waited_for.candidate, waited_for.baseline.number) == (v3, 1)
        assert waited_for.prompt_set.slug == "aria-v2-held-out" and waited_for.result["prompts"] >= 1
        out = capsys.readouterr().out
        assert re.search(r"^win rate \d\.\d{3} \[", out, re.M), out
        assert (queued_evaluation.candidate, queued_evaluation.baseline.number) == (v3, 1)
        assert queued_evaluation.prompt_set.slug == "aria-demo" and queued_evaluation.result is None

        # Blind A/B pairs for reviewers, sent once both sides have run.
        call_command(*pairs[0])
        ab = Evaluation.objects.latest("pk")
        assert (ab.candidate, ab.human_pairs, ab.human_overlap) == (v3, 40, 2)
        assert ab.prompt_set == waited_for.prompt_set  # the held-out prompts again


def test_the_train_run_body_of_the_api_docs_starts_a_train_run(demo, media, settings, tmp_path, client, admin_user):
    settings.DATA_DIR = tmp_path
    call_command(*manage_commands(code_blocks(DOCS / "training.md", "sh")[0])[0])  # aria@1, grpo_prompts
    (body,) = code_blocks(DOCS / "training.md", "json")
    token = tokens.token_create(user=admin_user, name="docs")[1]
    response = client.post(
        "/api/runs", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.content
    run = PipelineRun.objects.get(pk=response.json()["id"])
    assert (run.kind, run.params["method"], run.params["training"]["steps"], run.params["training"]["beta"]) == (
        "train",
        "grpo",
        60,
        0.04,
    )
    assert response.json()["trains_version"] == 2


def test_the_trl_script_of_the_dataset_docs_trains_with_the_judges_reward(demo, media, settings, tmp_path, triton_url):
    settings.DATA_DIR = tmp_path
    (build,) = code_blocks(DOCS / "datasets.md", "sh")
    for command in manage_commands(build):
        call_command(*command)
    assert DatasetVersion.objects.get(dataset="aria", number=1).kind == "grpo_prompts"
    env = {
        **worker_env(triton_url),  # this test's database and data folder, the session's tritonserver
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", python_block(DOCS / "datasets.md")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # TRL's summary of the run: the judge's mean reward, a number on the rubric's 0..1 scale.
    logged = done.stdout + done.stderr
    reward = re.search(r"'rewards/judge_aria-voice_v1/mean': '([^']+)'", logged)
    assert reward and 0 <= float(reward.group(1)) <= 1, logged[-3000:]
    assert (tmp_path / "trl" / "aria-grpo").is_dir()
