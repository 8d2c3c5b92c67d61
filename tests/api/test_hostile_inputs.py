"""Hostile input gets the documented refusal, never a 500, and writes nothing: JSON nested far
too deep, NaN and infinities, digits that are not ASCII, numbers too long for the database;
through the API, imports and the pages' forms."""

import json
from pathlib import Path

import pytest

from labelling.access import tokens
from labelling.models import Character, DatasetVersion, PipelineRun, Rubric
from shaping_core import strict
from tests.api.test_api import Api, counts

DEEP = "[" * 100_000  # Python's own reader gives up (RecursionError) long before this


@pytest.fixture
def api(client, admin_user):
    return Api(client, tokens.token_create(user=admin_user, name="hostile")[1])


# --- the strict reader, alone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (DEEP, "nested deeper than 64 levels"),
        ("[" * 65 + "]" * 65, "nested deeper than 64 levels"),
        ('{"a": NaN}', "NaN is not a number JSON allows"),
        ("[-Infinity]", "-Infinity is not a number JSON allows"),
        ('{"x": 1e999}', "inf is not a number JSON allows"),
    ],
)
def test_the_strict_reader_refuses_with_a_reason(text, reason):
    with pytest.raises(strict.NotStrictJson, match=reason):
        strict.json_loads(text)


def test_the_strict_reader_takes_ordinary_json_and_ascii_numbers():
    assert strict.json_loads("[" * 64 + "]" * 64) is not None
    assert strict.json_loads('{"a": [1, 2.5, "NaN"]}') == {"a": [1, 2.5, "NaN"]}
    assert [strict.whole_number(t) for t in ("7", "0042", "²", "١", "-1", " 1", "9" * 19, "")] == [
        7,
        42,
        None,
        None,
        None,
        None,
        None,
        None,
    ]


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (DEEP, "nested deeper than 64 levels"),
        (DEEP.replace("[", '{"a":', 1) + '"\\u0000"', "nested deeper"),  # what the NUL check reads too
        ('{"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "revise_threshold": NaN}', "NaN"),
        ('{"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "max_tokens": 1e999}', "inf"),
    ],
)
def test_a_body_the_strict_reader_refuses_is_a_400_saying_why(api, demo, raw, reason):
    before = counts()
    response = api.post("/runs", raw=raw)
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("Cannot parse request body: ")
    assert reason in response.json()["detail"]
    assert counts() == before


def test_a_nan_in_a_dataset_filter_is_refused_at_once(api, demo):
    raw = '{"dataset": "aria", "kind": "dpo", "filter": {"rubric": "aria-voice", "min_margin": NaN}}'
    response = api.post("/datasets", raw=raw)
    assert response.status_code == 400 and "NaN" in response.json()["detail"], response.content
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("number", ["²", "١", "9" * 30])
def test_a_dataset_version_number_in_other_digits_is_a_400_on_dataset(api, demo, number):
    body = {"kind": "train", "dataset": f"aria@{number}", "method": "sft"}
    response = api.post("/runs", body)
    assert response.status_code == 400, response.content
    assert "expected NAME@N" in response.json()["errors"]["dataset"]
    assert not PipelineRun.objects.filter(kind="train").exists()


# --- imports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("deep.jsonl", DEEP, "nested deeper than 64 levels"),
        ("nan.jsonl", '{"kind": "character", "slug": "bo", "name": "Bo", "persona": "x", "extra": NaN}', "NaN"),
        ("inf.jsonl", '{"kind": "character", "slug": "bo", "name": "Bo", "persona": "x", "extra": 1e999}', "inf"),
        ("deep.yaml", "a: " + "[" * 5_000, "nested deeper than 64 levels"),
        ("shallow-but-deep.yaml", "a: " + "[" * 80 + "]" * 80, "nested deeper than 64 levels"),
        ("nan.yaml", "characters:\n  - {slug: bo, name: Bo, persona: x, extra: .nan}\n", "nan is not a number"),
    ],
)
def test_an_import_the_strict_reader_refuses_is_a_400_saying_why(api, db, name, content, reason):
    response = api.post("/import", {"name": name, "content": content})
    assert response.status_code == 400, response.content
    assert reason in json.dumps(response.json()), response.json()
    assert not Character.objects.exists()


def test_a_rubric_level_in_other_digits_is_refused_not_a_500(api, db):
    rubric = {
        "kind": "rubric",
        "slug": "r",
        "name": "R",
        "criteria": [{"key": "k", "description": "d", "scale_min": 1, "scale_max": 3, "levels": {"²": "two"}}],
    }
    response = api.post("/import", {"name": "r.jsonl", "content": json.dumps(rubric)})
    assert response.status_code == 400, response.content
    assert "'²' is not a score in 1..3" in json.dumps(response.json(), ensure_ascii=False)
    assert not Rubric.objects.exists()


# --- the pages' forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("group_size", "١", "a number is required"),  # int("١") is 1: taken silently before
        ("group_size", "²", "a number is required"),  # "²".isdigit(), int("²") raised: a 500
        ("character", "²", "no such character"),
        ("character", "9" * 30, "no such character"),  # past the database's integer
        ("generator_version", "²", "a version number is required"),
    ],
)
def test_the_new_run_form_refuses_other_digits_on_the_field(admin_client, demo, field, value, message):
    form = {
        "kind": "generate",
        "character": str(Character.objects.get(slug="aria").pk),
        "prompt_set": "",
        "group_size": "2",
        "max_tokens": "16",
        "threshold": "0.5",
        "max_rounds": "1",
        field: value,
    }
    before = counts()
    response = admin_client.post("/runs/new", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert counts() == before


@pytest.mark.parametrize(("field", "value"), [("steps", "²"), ("from_version", "١"), ("dataset", "²")])
def test_the_train_form_refuses_other_digits_on_the_field(admin_client, demo, field, value):
    form = {"dataset": "1", "method": "sft", "steps": "2", field: value}
    response = admin_client.post("/models/train", form)
    assert response.status_code == 400, response.content[:300]
    assert not PipelineRun.objects.filter(kind="train").exists()


# --- dataset names and filters -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["données", "a/b", "ＡＢ"])  # length: the schema says (a 422)
def test_a_dataset_name_is_an_ascii_slug(api, demo, media, name):
    body = {"dataset": name, "kind": "dpo", "filter": {"rubric": "aria-voice"}}
    response = api.post("/datasets", body)
    assert response.status_code == 400, response.content
    assert "ASCII" in response.json()["errors"]["dataset"]
    assert not DatasetVersion.objects.exists()


def test_a_nan_filter_from_the_admin_form_is_named_and_a_failed_build_leaves_no_folder(demo, media):
    from django.conf import settings
    from django.core.exceptions import ValidationError

    from labelling.datasets import services as dataset_services

    folder = Path(settings.MEDIA_ROOT) / "datasets" / "aria"
    with pytest.raises(ValidationError) as refused:
        dataset_services.dataset_build(
            dataset="aria", kind="dpo", filter={"rubric": "aria-voice", "min_margin": float("nan")}
        )
    assert "nan is not a number" in refused.value.message_dict["filter"][0]
    with pytest.raises(ValidationError, match="selects no rows"):
        dataset_services.dataset_build(dataset="aria", kind="dpo", filter={"rubric": "aria-voice", "runs": [424242]})
    assert not folder.exists()
    assert not DatasetVersion.objects.exists()


# --- unknown fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/runs",
            {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "temperature": 1e9},
            "temperature",
        ),
        ("/runs", {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "training": {}}, "training"),
        ("/runs", {"kind": "judge", "source_run": 1, "rubric": "aria-voice", "character": "aria"}, "character"),
        ("/datasets", {"dataset": "aria", "kind": "dpo", "filter": {}, "shuffle": True}, "shuffle"),
        ("/evaluations", {"candidate": 1, "rubric": "aria-voice", "sampling": {}}, "sampling"),
    ],
)
def test_a_field_the_body_does_not_know_is_a_422_naming_it(api, demo, path, body, field):
    before = counts()
    response = api.post(path, body)
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {field: "Extra inputs are not permitted"}
    assert counts() == before
