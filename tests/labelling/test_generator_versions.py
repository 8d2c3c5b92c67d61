"""Generator versions as rows: version 1 from the migration, pinning a run to a version (the
form, the API, the CLI), making another version current, the model versions page and API by
role, and the dataset filter by version."""

import hashlib
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, PromptIn, PromptSetIn
from labelling.datasets.filters import DatasetFilter, groups_for
from labelling.models import GeneratorVersion, PipelineRun
from labelling.records import services as record_services
from labelling.runs import services as run_services
from labelling.versions.generators import services as generator_services
from shaping_core import weights


@pytest.fixture
def v1(db):
    return GeneratorVersion.objects.get(model_name="qwen3", number=1)


def version(number: int, *, parent=None, status="ready", method="grpo") -> GeneratorVersion:
    return GeneratorVersion.objects.create(
        model_name="qwen3", number=number, parent=parent, status=status, method=method, config={"lr": 1e-6}
    )


@pytest.fixture
def scene(db):
    character = catalogue_services.character_create(data=CharacterIn(slug="mira", name="Mira", persona="Mira."))
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="keeper", name="Keeper"))
    catalogue_services.prompts_add(
        prompt_set=prompt_set, prompts=[PromptIn(id="p0", messages=[{"role": "user", "content": "Hi"}])]
    )
    return character, prompt_set


def start(scene, **params) -> PipelineRun:
    character, prompt_set = scene
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, params=params, enqueue=False
    )
    return run


# --- the migration ----------------------------------------------------------------------------


def test_the_migration_makes_the_shipped_model_version_1_ready_and_current(v1, settings):
    onnx_dir = settings.BASE_DIR / "inference/weights/tiny-qwen3"
    data, graph = (onnx_dir / "model.onnx.data").read_bytes(), (onnx_dir / "model.onnx").read_bytes()
    assert v1.weights_sha256 == hashlib.sha256(data + graph).hexdigest()
    assert v1.weights_sha256 == weights.weights_sha256(onnx_dir)
    assert (v1.status, v1.is_current, v1.method, v1.parent, v1.dataset_version) == ("ready", True, "", None, None)
    assert v1.onnx_dir == "inference/weights/tiny-qwen3"
    assert GeneratorVersion.path(v1.onnx_dir) == onnx_dir
    assert GeneratorVersion.objects.filter(is_current=True).count() == 1


def test_version_1_keeps_the_hugging_face_weights_its_onnx_files_were_built_from(v1, settings):
    """Training starts from the exact weights version 1 serves: the shipped hf/ folder, whose
    safetensors hash BUILD.json recorded when the ONNX files were rebuilt from it."""
    hf_dir = GeneratorVersion.path(v1.hf_dir)
    assert hf_dir == settings.BASE_DIR / "inference/weights/tiny-qwen3/hf"
    build = json.loads((hf_dir.parent / "BUILD.json").read_text())
    assert hashlib.sha256((hf_dir / "model.safetensors").read_bytes()).hexdigest() == build["hf_sha256"]
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3"
    assert {k: config[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size")} == {
        k: build["config"][k] for k in ("hidden_size", "num_hidden_layers", "vocab_size")
    }
    assert (hf_dir / "tokenizer.json").read_bytes() == (hf_dir.parent / "tokenizer.json").read_bytes()


def test_the_database_refuses_two_current_versions_and_a_current_one_not_ready(v1):
    with pytest.raises(IntegrityError), transaction.atomic():
        GeneratorVersion.objects.create(model_name="qwen3", number=2, status="ready", is_current=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        GeneratorVersion.objects.create(model_name="other", number=1, status="training", is_current=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        GeneratorVersion.objects.create(model_name="qwen3", number=1, status="ready")


# --- pinning a run ------------------------------------------------------------------------------


def test_a_run_that_pins_no_version_is_pinned_to_the_current_one(v1, scene):
    assert start(scene).params["generator_version"] == 1


def test_a_run_may_pin_another_ready_version(v1, scene):
    version(2, parent=v1)
    assert start(scene, generator_version=2).params["generator_version"] == 2


@pytest.mark.parametrize(
    ("number", "status", "message"),
    [(7, None, "there is no version 7 of qwen3"), (2, "training", "version 2 of qwen3 is training, not ready")],
)
def test_a_run_pinned_to_a_missing_or_unready_version_is_refused(v1, scene, number, status, message):
    if status:
        version(2, parent=v1, status=status)
    with pytest.raises(ValidationError) as caught:
        start(scene, generator_version=number)
    assert caught.value.message_dict == {"generator_version": [message]}
    assert not PipelineRun.objects.exists()


def test_a_judge_run_needs_no_generator_version(v1, scene):
    source = start(scene)
    GeneratorVersion.objects.filter(pk=v1.pk).update(is_current=False)
    rubric_run, _ = run_services.run_start(kind="judge", rubric=_rubric(), source_run=source, enqueue=False)
    assert "generator_version" not in rubric_run.params


def _rubric():
    from labelling.catalogue.schemas import CriterionIn, RubricIn

    return catalogue_services.rubric_create(
        data=RubricIn(slug="voice", name="Voice", criteria=[CriterionIn(key="tone", description="Tone")])
    )


def test_the_run_form_offers_ready_versions_and_refuses_a_missing_one(admin_client, v1, scene):
    version(2, parent=v1)
    version(3, parent=v1, status="failed")
    page = admin_client.get("/runs/new").content.decode()
    assert '<option value="1"' in page and '<option value="2"' in page and '<option value="3"' not in page
    character, prompt_set = scene
    form = {"kind": "generate", "character": character.pk, "prompt_set": prompt_set.pk, "group_size": 2}
    form |= {"max_tokens": 8, "threshold": 0.5, "max_rounds": 1}
    refused = admin_client.post("/runs/new", {**form, "generator_version": "3"})
    assert refused.status_code == 400
    assert "version 3 of qwen3 is failed, not ready" in refused.content.decode()
    assert not PipelineRun.objects.exists()
    started = admin_client.post("/runs/new", {**form, "generator_version": "2"})
    assert started.status_code == 302
    assert PipelineRun.objects.get().params["generator_version"] == 2


def test_the_cli_refuses_a_missing_version(v1, scene):
    with pytest.raises(CommandError, match="generator_version: there is no version 4 of qwen3"):
        call_command("start_run", "--task", "generate", "--character", "mira", "--prompt-set", "keeper",  # --task: --kind's old name
                     "--generator-version", "4")  # fmt: skip
    assert not PipelineRun.objects.exists()


# --- making a version current -----------------------------------------------------------------


def test_making_a_version_current_swaps_the_one_current_and_rolls_back(v1):
    v2 = version(2, parent=v1)
    assert generator_services.generator_version_make_current(version=v2).is_current
    assert list(GeneratorVersion.objects.filter(is_current=True)) == [v2]
    generator_services.generator_version_make_current(version=v1)  # a rollback is the same action
    assert list(GeneratorVersion.objects.filter(is_current=True)) == [v1]


@pytest.mark.parametrize("status", ["training", "converting", "failed", "retired"])
def test_a_version_that_is_not_ready_cannot_be_made_current(v1, status):
    v2 = version(2, parent=v1, status=status)
    with pytest.raises(ValidationError) as caught:
        generator_services.generator_version_make_current(version=v2)
    assert caught.value.message_dict == {
        "status": [f"version 2 of qwen3 is {status}; only a ready version can be current"]
    }
    assert list(GeneratorVersion.objects.filter(is_current=True)) == [v1]


def test_the_current_version_cannot_be_retired(v1):
    with pytest.raises(ValidationError, match="make another version current before retiring it"):
        generator_services.generator_version_retire(version=v1)


def test_the_admin_action_makes_a_version_current(admin_client, v1):
    v2 = version(2, parent=v1)
    url = "/admin/labelling/generatorversion/"
    # Not marked better than its parent (never evaluated): the plain action asks to confirm.
    asked = admin_client.post(url, {"action": "make_current", "_selected_action": [v2.pk]}, follow=True)
    assert "has not been evaluated against its parent" in asked.content.decode()
    assert GeneratorVersion.objects.get(is_current=True) == v1
    assert admin_client.post(url, {"action": "make_current_anyway", "_selected_action": [v2.pk]}).status_code == 302
    assert GeneratorVersion.objects.get(is_current=True) == v2
    version(3, parent=v2, status="failed")
    three = GeneratorVersion.objects.get(number=3)
    admin_client.post(url, {"action": "make_current_anyway", "_selected_action": [three.pk]})
    assert GeneratorVersion.objects.get(is_current=True) == v2  # not ready: refused all the same
    assert "v2" in admin_client.get(url).content.decode()


# --- the API ----------------------------------------------------------------------------------


def _api(client, user):
    headers = {"Authorization": f"Bearer {tokens.token_create(user=user, name='tests')[1]}"}
    return lambda method, path: getattr(client, method)(f"/api{path}", headers=headers)


def test_an_admins_token_lists_the_versions_with_their_lineage(client, admin_user, reviewer, v1):
    version(2, parent=v1)
    assert _api(client, reviewer)("get", "/model-versions").status_code == 403  # as the Models page
    body = _api(client, admin_user)("get", "/model-versions").json()
    assert [(v["number"], v["parent"], v["method"], v["is_current"]) for v in body["items"]] == [
        (1, None, "", True),
        (2, 1, "grpo", False),
    ]


def test_only_an_admin_token_makes_a_version_current(client, admin_user, reviewer, v1):
    version(2, parent=v1)
    version(3, parent=v1, status="training")
    as_reviewer, as_admin = _api(client, reviewer), _api(client, admin_user)
    assert as_reviewer("post", "/model-versions/2/current").status_code == 403
    assert GeneratorVersion.objects.get(is_current=True) == v1
    assert as_admin("post", "/model-versions/9/current").status_code == 404
    refused = as_admin("post", "/model-versions/3/current?confirm=true")
    assert refused.status_code == 409
    assert refused.json()["errors"] == {"status": "version 3 of qwen3 is training; only a ready version can be current"}
    asked = as_admin("post", "/model-versions/2/current")
    assert asked.status_code == 409 and "send confirm=true" in asked.json()["detail"]
    assert GeneratorVersion.objects.get(is_current=True) == v1
    made = as_admin("post", "/model-versions/2/current?confirm=true")
    assert made.status_code == 200 and made.json()["is_current"] is True
    assert GeneratorVersion.objects.get(is_current=True).number == 2


def test_the_api_pins_a_run_or_refuses_the_version_by_field(client, admin_user, v1, scene):
    headers = {"Authorization": f"Bearer {tokens.token_create(user=admin_user, name='tests')[1]}"}
    body = {"kind": "generate", "character": "mira", "prompt_set": "keeper", "generator_version": 5}
    refused = client.post("/api/runs", json.dumps(body), content_type="application/json", headers=headers)
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"generator_version": "there is no version 5 of qwen3"}
    body["generator_version"] = 1
    made = client.post("/api/runs", json.dumps(body), content_type="application/json", headers=headers)
    assert made.status_code == 201 and made.json()["generator_version"] == 1


# --- the page ---------------------------------------------------------------------------------


def test_the_page_lists_the_lineage_for_admins(admin_client, v1):
    v2 = version(2, parent=v1)
    GeneratorVersion.objects.create(model_name="qwen3", number=3, parent=v2, method="dpo", status="failed",
                                    error="<script>alert(1)</script>")  # fmt: skip
    page = admin_client.get("/models/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "v1 → v2" in text and "v2 → v3" in text and "DPO" in text and "failed" in text
    assert "<script>alert(1)" not in text and "&lt;script&gt;" in text
    assert 'id="model-version-1" class="current"' in text
    assert 'href="/models/"' in admin_client.get("/").content.decode()


def test_the_page_is_for_admins_only(reviewer_client, v1):
    assert reviewer_client.get("/models/").status_code == 403
    assert 'href="/models/"' not in reviewer_client.get("/").content.decode()


# --- the dataset filter -----------------------------------------------------------------------


def test_a_dataset_filter_selects_the_groups_of_one_generator_version(v1, scene):
    character, prompt_set = scene
    v2 = version(2, parent=v1)
    groups = {}
    for pinned in (v1, v2):
        run = start(scene, generator_version=pinned.number)
        group = record_services.group_for(run=run, prompt=prompt_set.prompts.get())
        record_services.generation_record(
            group=group,
            index=0,
            messages=[],
            raw_text="hello",
            producer=record_services.producer_get_or_create(backend="triton", generator=pinned),
            run=run,
        )
        groups[pinned.number] = group.pk
    for number in (1, 2):
        selected = groups_for(DatasetFilter.from_dict({"generator_version": number}))
        assert list(selected.values_list("pk", flat=True)) == [groups[number]]
    with pytest.raises(ValidationError):
        DatasetFilter.from_dict({"generator_version": "2"})
