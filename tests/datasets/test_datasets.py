"""Dataset versions: rewards, advantages, TRL formats, determinism, integrity."""

import json
import math

import pytest
from django.core.exceptions import ValidationError

from labelling.datasets import selectors as dataset_selectors
from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.models import DatasetVersion, Generation, Judgment, PipelineRun
from labelling.records import services as record_services


@pytest.fixture(autouse=True)
def _media(media):
    return media


def build(kind, **filter_):
    return dataset_services.dataset_build(dataset="mira", kind=kind, filter={"rubric": "voice", **filter_})


def rows(version):
    return [json.loads(line) for line in b"".join(storage.dataset_stream(version)).splitlines()]


def test_grpo_rows_carry_rewards_and_group_relative_advantages(world):
    version = build("grpo")
    first, tied = rows(version)
    assert first["rewards"] == [0.0, 0.5, 1.0]
    std = math.sqrt(((0 - 0.5) ** 2 + 0 + (1 - 0.5) ** 2) / 3)
    assert first["advantages"] == [round(-0.5 / (std + 1e-6), 6), 0.0, round(0.5 / (std + 1e-6), 6)]
    assert first["prompt"][0] == {"role": "system", "content": "Mira keeps a lighthouse."}
    assert first["completions"][2] == [{"role": "assistant", "content": "a-2"}]
    assert first["rubric_version"] == "voice@v1" and first["scores"][0] == {"voice": 1.0}
    assert tied["advantages"] == [0.0, 0.0]
    assert version.stats["zero_advantage_share"] == 0.5
    assert version.reward_policy["precedence"].startswith("human")


def test_human_scores_take_precedence_over_the_judge(world):
    low = world["made"][("a", 2)]  # the judge gave it 5
    record_services.judgment_record(
        generation=low,
        rubric=world["rubric"],
        source=Judgment.Source.HUMAN,
        scores={"voice": 1},
        reviewer=world["reviewer"],
    )
    first = rows(build("grpo"))[0]
    assert first["rewards"] == [0.0, 0.5, 0.0]
    assert first["reward_sources"] == ["judge", "judge", "human"]


def test_pairs_follow_rewards_above_the_margin_and_ties_never_pair(world):
    pairs = rows(build("dpo", min_margin=0.3))
    assert {p["id"] for p in pairs} == {
        f"p{world['made'][('a', 1)].pk}>{world['made'][('a', 0)].pk}",
        f"p{world['made'][('a', 2)].pk}>{world['made'][('a', 0)].pk}",
        f"p{world['made'][('a', 2)].pk}>{world['made'][('a', 1)].pk}",
    }
    assert all(p["margin"] >= 0.3 for p in pairs)
    assert rows(build("dpo", min_margin=0.6))[0]["margin"] == 1.0
    top = next(p for p in pairs if p["margin"] == 1.0)
    assert top["chosen"] == [{"role": "assistant", "content": "a-2"}]
    assert top["rejected"] == [{"role": "assistant", "content": "a-0"}]


def test_a_reviewer_rewrite_is_chosen_over_its_original(world):
    original = world["made"][("a", 2)]  # the judge's favourite
    rewrite = record_services.generation_record(
        group=original.group,
        index=2,
        messages=original.messages,
        producer=None,
        raw_text="a better answer",
        parent=original,
        source=Generation.Source.HUMAN_REWRITE,
    )
    pairs = rows(build("dpo"))
    mine = [p for p in pairs if p["origin"] == "rewrite"]
    assert len(mine) == 1 and mine[0]["id"] == f"p{rewrite.pk}>{original.pk}"
    assert mine[0]["chosen"][0]["content"] == "a better answer"


def test_kto_labels_and_sft_best_completions(world):
    kto = rows(build("kto"))
    assert {(r["completion"][0]["content"], r["label"]) for r in kto} == {("a-0", False), ("a-2", True)}
    sft = rows(build("sft"))
    assert [r["messages"][-1] for r in sft] == [
        {"role": "assistant", "content": "a-2"},
        {"role": "assistant", "content": "b-0"},
    ]


def test_the_same_filter_over_the_same_data_gives_the_same_bytes(world):
    first, second = build("grpo"), build("grpo")
    assert (first.number, second.number) == (1, 2)
    assert first.sha256 == second.sha256 and b"".join(storage.dataset_stream(first)) == b"".join(
        storage.dataset_stream(second)
    )
    diff = dataset_selectors.dataset_compare(first, second)
    assert diff == {"added": [], "removed": [], "changed": [], "unchanged": 2}


def test_compare_reports_added_removed_and_changed_rows(world):
    old = build("grpo")
    record_services.judgment_record(
        generation=world["made"][("a", 0)],
        rubric=world["rubric"],
        source=Judgment.Source.HUMAN,
        scores={"voice": 5},
        reviewer=world["reviewer"],
    )
    new = build("grpo", runs=[world["run"].pk])
    diff = dataset_selectors.dataset_compare(old, new)
    assert diff["changed"] == [f"g{world['made'][('a', 0)].group_id}"] and diff["unchanged"] == 1


def test_a_filter_that_selects_nothing_writes_nothing(world, media):
    with pytest.raises(ValidationError, match="selects no rows"):
        build("grpo", character="nobody")
    assert not DatasetVersion.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("kind", "filter_", "field"),
    [
        ("grpo", {"rubric": "nope"}, "rubric"),
        ("grpo", {"runs": "1"}, "runs"),
        ("grpo", {"min_human_reviews": "2"}, "min_human_reviews"),
        ("grpo", {"colour": "red"}, "filter"),
        ("grpo", {"created_after": "yesterday"}, "created_after"),
        ("parquet", {}, "kind"),
    ],
)
def test_bad_requests_name_the_field(world, kind, filter_, field):
    with pytest.raises(ValidationError) as caught:
        dataset_services.dataset_build(dataset="mira", kind=kind, filter={"rubric": "voice", **filter_})
    assert field in caught.value.message_dict
    assert not DatasetVersion.objects.exists()


def test_a_version_whose_file_changed_or_vanished_is_never_served(world):
    version = build("grpo")
    path = storage.dataset_path(version)
    path.write_bytes(path.read_bytes().replace(b"a-2", b"a-9"))
    with pytest.raises(storage.DatasetCorrupt, match="no longer matches"):
        next(storage.dataset_stream(version))
    path.unlink()
    with pytest.raises(storage.DatasetCorrupt, match="missing"):
        next(storage.dataset_stream(version))


def test_flagged_completions_are_left_out_unless_asked(world):
    flagged = world["made"][("a", 1)]
    record_services.judgment_record(
        generation=flagged,
        rubric=world["rubric"],
        source=Judgment.Source.HUMAN,
        scores={"voice": 3},
        reviewer=world["reviewer"],
        flagged=True,
    )
    assert len(rows(build("grpo"))[0]["rewards"]) == 2
    assert len(rows(build("grpo", exclude_flagged=False))[0]["rewards"]) == 3


def test_grpo_prompt_rows_need_no_rubric(world):
    version = dataset_services.dataset_build(dataset="prompts", kind="grpo_prompts", filter={})
    assert [r["prompt"][-1]["content"] for r in rows(version)] == ["What do you see?", "Any ships?"]
    assert PipelineRun.objects.count() == 1
