"""Dataset rewards include rule criteria: judgments carry the rules' scores, so the stored
rewards, advantages and per-criterion scores of an export count them like any criterion."""

import json

import pytest

from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.models import Judgment
from labelling.records import services as record_services
from labelling.runs import services as run_services


@pytest.fixture(autouse=True)
def _media(media):
    return media


@pytest.fixture
def judged(db, reviewer):
    """One group of three, judged 1/3/3 on `voice`; only the second mentions the lighthouse."""
    character = catalogue_services.character_create(
        data=CharacterIn(slug="mira", name="Mira", persona="Mira keeps a lighthouse.")
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="voice",
            name="Voice",
            criteria=[
                CriterionIn(key="voice", description="In voice", scale_min=1, scale_max=5),
                CriterionIn(
                    key="lighthouse",
                    description="Mentions the lighthouse",
                    scale_min=0,
                    scale_max=1,
                    rule={"kind": "keywords", "include": ["lighthouse"]},
                ),
            ],
        )
    )
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="keeper", name="Keeper"))
    (prompt,) = catalogue_services.prompts_add(
        prompt_set=prompt_set, prompts=[PromptIn(id="a", messages=[{"role": "user", "content": "What do you see?"}])]
    )
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, group_size=3, enqueue=False
    )
    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    group = record_services.group_for(run=run, prompt=prompt)
    messages = catalogue_selectors.prompt_messages_for(character, prompt)
    made = []
    for index, (text, score) in enumerate((("Fog.", 1), ("The lighthouse is lit.", 3), ("Ships.", 3))):
        generation = record_services.generation_record(
            group=group, index=index, messages=messages, producer=None, run=run, raw_text=text
        )
        record_services.judgment_record(  # the judge's score only: the rule's is filled in
            generation=generation,
            rubric=rubric,
            source=Judgment.Source.JUDGE,
            scores={"voice": score},
            run=run,
            producer=judge,
        )
        made.append(generation)
    return {"rubric": rubric, "made": made, "reviewer": reviewer}


def _grpo_row():
    version = dataset_services.dataset_build(dataset="mira", kind="grpo", filter={"rubric": "voice"})
    (row,) = [json.loads(line) for line in b"".join(storage.dataset_stream(version)).splitlines()]
    return row


def test_export_rewards_include_the_rule_criterion(judged):
    row = _grpo_row()
    # voice 1/3/3 -> 0, .5, .5; lighthouse 0/1/0; equal weights.
    assert row["rewards"] == [0.0, 0.75, 0.25]
    assert [set(s) for s in row["scores"]] == [{"voice", "lighthouse"}] * 3
    assert row["scores"][1]["lighthouse"] == 1.0


def test_a_human_judgment_of_the_reviewers_criteria_counts_the_rule_too(judged):
    record_services.judgment_record(
        generation=judged["made"][2],
        rubric=judged["rubric"],
        source=Judgment.Source.HUMAN,
        scores={"voice": 5},
        reviewer=judged["reviewer"],
    )
    row = _grpo_row()
    assert row["rewards"] == [0.0, 0.75, 0.5]  # voice 1.0, lighthouse 0 for the human-scored third
    assert row["reward_sources"] == ["judge", "judge", "human"]
