"""Asking for a train run: everything checkable is checked before anything is queued, and a
refusal names the field and creates nothing (no run, no half-registered version)."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from labelling.access import tokens
from labelling.datasets import services as dataset_services
from labelling.datasets.storage import dataset_path
from labelling.models import GeneratorVersion, PipelineRun
from labelling.versions.training import services as training_services


@pytest.fixture
def versions(world, media):
    def build(kind, rubric="voice"):
        return dataset_services.dataset_build(
            dataset="mira", kind=kind, filter={"runs": [world["run"].pk], **({"rubric": rubric} if rubric else {})}
        )

    return {
        "grpo": build("grpo_prompts"),
        "dpo": build("dpo"),
        "sft": build("sft"),
        "bare": build("grpo_prompts", None),
    }


def _counts():
    return PipelineRun.objects.filter(kind="train").count(), GeneratorVersion.objects.count()


def _refused(field: str, **kwargs) -> str:
    before = _counts()
    with pytest.raises(ValidationError) as caught:
        training_services.train_start(enqueue=False, **kwargs)
    assert _counts() == before
    assert field in caught.value.message_dict, caught.value.message_dict
    return " ".join(caught.value.message_dict[field])


def test_a_train_run_registers_the_version_it_will_make(versions):
    run, created = training_services.train_start(
        dataset_version=versions["grpo"], method="grpo", params={"steps": 3}, enqueue=False
    )
    assert created and run.kind == "train" and run.status == "queued" and run.total_items == 3
    version = GeneratorVersion.objects.get(train_run=run)
    assert (version.number, version.parent.number, version.status, version.method) == (2, 1, "training", "grpo")
    assert version.dataset_version == versions["grpo"] and not version.is_current
    # The defaults that decide the outcome are recorded, not left to the trainer's.
    training = run.params["training"]
    assert training["steps"] == 3 and training["beta"] > 0 and training["num_generations"] >= 2
    assert {"loss_type", "scale_rewards", "learning_rate"} <= set(training)
    assert version.config == training
    assert run.params["rubric_spec"]["slug"] == "voice" and run.params["dataset"] == "mira@1"


def test_the_same_idempotency_key_returns_the_same_run(versions):
    first, created = training_services.train_start(
        dataset_version=versions["sft"], method="sft", idempotency_key="k1", enqueue=False
    )
    again, created_again = training_services.train_start(
        dataset_version=versions["sft"], method="sft", idempotency_key="k1", enqueue=False
    )
    assert created and not created_again and first.pk == again.pk
    assert GeneratorVersion.objects.filter(method="sft").count() == 1


def test_a_users_key_is_their_own_and_bound_to_the_request(versions, admin_user):
    from labelling.access.roles import ADMIN
    from labelling.runs.idempotency import IdempotencyConflict
    from tests.conftest import _make_user

    def start(user, **params):
        return training_services.train_start(
            dataset_version=versions["sft"], method="sft", params=params, idempotency_key="k1", user=user, enqueue=False
        )

    mine, _ = start(admin_user)
    theirs, created = start(_make_user("grace", ADMIN))
    assert created and theirs.pk != mine.pk
    assert start(admin_user)[0].pk == mine.pk
    with pytest.raises(IdempotencyConflict, match="already used for another request"):
        start(admin_user, steps=2)
    assert _counts() == (2, 3)


def test_a_dataset_of_the_wrong_kind_is_refused(versions):
    message = _refused("dataset", dataset_version=versions["dpo"], method="grpo")
    assert "is a dpo version; grpo trains on a grpo_prompts version" in message
    assert "sft trains on a sft version" in _refused("dataset", dataset_version=versions["grpo"], method="sft")


def test_a_corrupt_or_missing_dataset_file_is_refused(versions):
    path = dataset_path(versions["dpo"])
    path.write_text(path.read_text() + "{not json\n")
    assert "no longer matches its sha256" in _refused("dataset", dataset_version=versions["dpo"], method="dpo")
    path.unlink()
    assert "is missing" in _refused("dataset", dataset_version=versions["dpo"], method="dpo")


def test_a_version_that_does_not_exist_or_is_not_ready_is_refused(versions):
    assert "there is no version 9" in _refused(
        "from_version", dataset_version=versions["sft"], method="sft", from_version=9
    )
    GeneratorVersion.objects.create(number=5, status="failed", error="broken")
    assert "is failed, not ready" in _refused(
        "from_version", dataset_version=versions["sft"], method="sft", from_version=5
    )


def test_grpo_needs_a_rubric_with_a_criterion_to_reward(versions, world):
    assert "records no rubric" in _refused("rubric", dataset_version=versions["bare"], method="grpo")
    criterion = world["rubric"].criteria.get()
    criterion.weight = 0
    criterion.save()
    message = _refused("rubric", dataset_version=versions["bare"], method="grpo", rubric=world["rubric"])
    assert "no criterion with a weight above 0" in message


def test_unknown_or_out_of_range_settings_are_refused(versions):
    assert "warmup" in _refused("params", dataset_version=versions["sft"], method="sft", params={"warmup": 3})
    assert "steps" in _refused("params", dataset_version=versions["sft"], method="sft", params={"steps": 0})
    assert "beta" in _refused("params", dataset_version=versions["grpo"], method="grpo", params={"beta": -1})


def test_the_train_command_refuses_bad_names_clearly(versions):
    with pytest.raises(CommandError, match="expected NAME@N"):
        call_command("train", "--dataset", "mira", "--method", "sft")
    with pytest.raises(CommandError, match="there is no version 7 of dataset 'mira'"):
        call_command("train", "--dataset", "mira@7", "--method", "sft")
    with pytest.raises(CommandError, match="dataset: mira v1 is a grpo_prompts version; dpo trains on a dpo version"):
        call_command("train", "--dataset", "mira@1", "--method", "dpo")
    assert _counts() == (0, 1)


def test_the_api_queues_a_train_run_and_refuses_bad_ones(
    versions, client, admin_user, django_capture_on_commit_callbacks
):
    headers = {"Authorization": f"Bearer {tokens.token_create(user=admin_user, name='tests')[1]}"}
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/api/runs",
            {"kind": "train", "dataset": "mira@3", "method": "sft", "training": {"steps": 2}},
            content_type="application/json",
            headers=headers,
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["trains_version"], body["total_items"]) == ("train", "queued", 2, 2)
    for payload, field, status in (
        ({"kind": "train", "method": "sft"}, "dataset", 422),  # the train body requires it
        ({"kind": "train", "dataset": "mira@3"}, "method", 422),
        ({"kind": "train", "dataset": "mira@99", "method": "sft"}, "dataset", 400),
        ({"kind": "train", "dataset": "mira@3", "method": "sft", "training": {"nope": 1}}, "params", 400),
        ({"kind": "train", "dataset": "mira@3", "method": "sft", "from_version": 4}, "from_version", 400),
    ):
        with django_capture_on_commit_callbacks(execute=False):
            response = client.post("/api/runs", payload, content_type="application/json", headers=headers)
        assert response.status_code == status, (payload, response.content)
        assert field in response.json()["errors"], response.json()
    assert _counts() == (1, 2)


def test_train_runs_go_to_their_own_queue(versions, django_capture_on_commit_callbacks):
    from huey.contrib.djhuey import HUEY

    from inference.train_queue import TRAIN_HUEY

    HUEY.flush()
    TRAIN_HUEY.flush()
    with django_capture_on_commit_callbacks(execute=True):
        training_services.train_start(dataset_version=versions["sft"], method="sft")
    assert (TRAIN_HUEY.pending_count(), HUEY.pending_count()) == (1, 0)
    assert TRAIN_HUEY.name == f"{HUEY.name}-train"
    TRAIN_HUEY.flush()


def _stale_running(run, settings, **fields):
    from datetime import timedelta

    from django.utils import timezone

    PipelineRun.objects.filter(pk=run.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_S + 5), **fields
    )


def test_a_stale_train_run_is_resumed_by_the_training_watchdog_only(versions, settings):
    from huey.contrib.djhuey import HUEY

    from inference import tasks, train_queue

    run, _ = training_services.train_start(dataset_version=versions["sft"], method="sft", enqueue=False)
    _stale_running(run, settings)
    HUEY.flush()
    train_queue.TRAIN_HUEY.flush()
    assert tasks.resume_stale_runs.call_local() == []  # the pipeline watchdog leaves it to the trainers
    assert train_queue.resume_stale_train_runs.call_local() == [run.pk]
    assert (train_queue.TRAIN_HUEY.pending_count(), HUEY.pending_count()) == (1, 0)
    train_queue.TRAIN_HUEY.flush()


def test_a_train_run_cancelled_while_its_worker_died_fails_its_version(versions, settings):
    from inference import tasks

    run, _ = training_services.train_start(dataset_version=versions["sft"], method="sft", enqueue=False)
    _stale_running(run, settings, cancel_requested=True)
    tasks.resume_stale_runs.call_local()
    run.refresh_from_db()
    version = GeneratorVersion.objects.get(train_run=run)
    assert run.status == "cancelled"
    assert version.status == "failed" and f"resume run #{run.pk}" in version.error


def test_the_models_page_starts_a_train_run_and_shows_refusals_under_their_field(versions, admin_client):
    page = admin_client.get("/models/").content.decode()
    assert 'id="train-form"' in page and "mira@3 · SFT messages" in page
    response = admin_client.post("/models/train", {"dataset": versions["dpo"].pk, "method": "grpo"})
    assert response.status_code == 400
    assert "is a dpo version; grpo trains on a grpo_prompts version" in response.content.decode()
    assert _counts() == (0, 1)
    response = admin_client.post(
        "/models/train",
        {"dataset": versions["sft"].pk, "method": "sft", "steps": "3", "lora": "on", "idempotency_key": "f1"},
    )
    run = PipelineRun.objects.get(kind="train")
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.params["training"]["steps"] == 3 and run.params["training"]["lora"] is True
    admin_client.post("/models/train", {"dataset": versions["sft"].pk, "method": "sft", "idempotency_key": "f1"})
    assert _counts() == (1, 2)  # a double submit starts one run
    detail = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert "Trains" in detail and "No step logged yet" in detail and 'hx-trigger="every 2s"' in detail


def test_a_worker_whose_claim_was_taken_over_fails_neither_the_run_nor_its_version(versions):
    from inference.versions import train_runs

    run, _ = training_services.train_start(dataset_version=versions["sft"], method="sft", enqueue=False)
    PipelineRun.objects.filter(pk=run.pk).update(status="running", execution=2)
    version = GeneratorVersion.objects.get(train_run=run)
    assert train_runs._fail(run.pk, 1, version, "TrainerExited", "killed") == "superseded"
    run.refresh_from_db()
    version.refresh_from_db()
    assert (run.status, run.errors, version.status) == ("running", [], "training")
    assert train_runs._fail(run.pk, 2, version, "TrainerExited", "killed") == "failed"
    version.refresh_from_db()
    assert version.status == "failed" and version.error == "killed"


def test_an_install_that_cannot_train_refuses_the_request_naming_what_to_install(versions, settings, tmp_path):
    """On the embedded default the trainer runs under this host's serve: an interpreter without
    the train extra (here Python itself, isolated from every installed package) is refused
    before any run or version exists."""
    import stat
    import sys

    bare = tmp_path / "python-without-trl"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    bare.chmod(bare.stat().st_mode | stat.S_IEXEC)
    settings.TRAIN_PYTHON = str(bare)
    settings.REDIS_URL = ""
    message = _refused("method", dataset_version=versions["grpo"], method="grpo")
    assert "cannot train" in message and "trl" in message and "pip install -e '.[train]'" in message


def test_this_install_can_train():
    import sys

    from inference.versions.training.config import missing_trainer_modules

    assert missing_trainer_modules(sys.executable) == []


def test_a_real_base_model_trains_lora_adapters_by_default(tmp_path):
    """Defaults follow the model trained: the tiny model's would wreck a real one."""
    import json

    from inference.versions.training.config import DEFAULTS, resolve

    real = tmp_path / "real"
    real.mkdir()
    (real / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    with (real / "model.safetensors").open("wb") as f:
        f.truncate(540_000_000)  # sparse: 135M float32 parameters' worth of bytes
    grpo = resolve("grpo", {}, base_hf_dir=real)
    assert grpo["lora"] and grpo["learning_rate"] == 2e-4 and grpo["max_completion_length"] == 96
    assert resolve("grpo", {"lora": False}, base_hf_dir=real)["lora"] is False  # a request still decides
    tiny = resolve("grpo", {}, base_hf_dir=None)
    assert tiny["lora"] is DEFAULTS["grpo"]["lora"] is False
    # Rollouts sample as the app serves: the engine's defaults.
    from inference.engine import SamplingParams

    served = SamplingParams()
    assert (tiny["temperature"], tiny["top_p"], tiny["top_k"]) == (served.temperature, served.top_p, served.top_k)
