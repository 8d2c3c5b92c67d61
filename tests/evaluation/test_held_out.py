"""A held-out split: a hash of each prompt keeps the same share out of a dataset version on
every build, training never sees those prompts, and an evaluation of a version trained on it
runs on them by default."""

import json

import pytest

from labelling.datasets import services as dataset_services
from labelling.datasets.filters import prompt_bucket
from labelling.datasets.storage import dataset_path
from labelling.models import GeneratorVersion
from labelling.versions.evaluation import services as evaluation_services


def _ids(version):
    return {row["prompt"][-1]["content"] for row in map(json.loads, dataset_path(version).read_text().splitlines())}


def test_the_held_out_prompts_never_reach_the_version_and_stay_the_same(judged_run):
    build = {"runs": [judged_run["run"].pk], "rubric": "voice", "held_out": 0.25}
    first = dataset_services.dataset_build(dataset="aria", kind="grpo_prompts", filter=build)
    again = dataset_services.dataset_build(dataset="aria", kind="sft", filter=build)
    held = {p.messages[-1]["content"] for p in judged_run["prompts"] if prompt_bucket("harbour", p.external_id) < 0.25}
    assert 4 <= len(held) <= 18  # a quarter of 40, give or take the hash
    assert _ids(first) == {p.messages[-1]["content"] for p in judged_run["prompts"]} - held
    assert {
        row["messages"][-2]["content"] for row in map(json.loads, dataset_path(again).read_text().splitlines())
    } == _ids(first)
    assert first.filter["held_out"] == 0.25
    held_set = dataset_services.dataset_held_out_prompt_set(version=first)
    assert {p.messages[-1]["content"] for p in held_set.prompts.all()} == held
    assert dataset_services.dataset_held_out_prompt_set(version=first) == held_set  # made once

    # An evaluation of a version trained on it runs on those prompts unless told otherwise.
    v2 = GeneratorVersion.objects.create(
        number=2, parent=GeneratorVersion.objects.get(number=1), dataset_version=first, method="grpo", status="ready"
    )
    evaluation = evaluation_services.evaluation_start(
        candidate=v2.number, rubric=judged_run["rubric"], character=judged_run["run"].character, enqueue=False
    )
    assert evaluation.prompt_set == held_set and evaluation.candidate_run.prompt_set == held_set


def test_a_share_out_of_range_is_refused(judged_run):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        dataset_services.dataset_build(dataset="aria", kind="sft", filter={"rubric": "voice", "held_out": 1})
    assert "held_out" in caught.value.message_dict
