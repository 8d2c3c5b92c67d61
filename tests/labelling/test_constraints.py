"""The database itself refuses rows that break the domain's rules."""

import pytest
from django.db import IntegrityError, transaction

from labelling.catalogue import importers
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, GroupIn
from labelling.models import (
    Character,
    CriterionScore,
    Generation,
    Group,
    Judgment,
    PipelineRun,
    PromptSet,
)
from labelling.records import services as record_services


@pytest.fixture
def judged(demo):
    judgment = Judgment.objects.filter(source=Judgment.Source.JUDGE, status="ok").first()
    return judgment


def _refused(callable_):
    with pytest.raises(IntegrityError), transaction.atomic():
        callable_()


def test_it_refuses_a_score_above_the_criterion_scale(judged):
    criterion = judged.rubric.criteria.get(key="signed")  # scale 0..1
    score = judged.scores.get(criterion=criterion)
    score.score = 2
    _refused(score.save)


def test_it_refuses_a_score_below_the_criterion_scale_on_insert(judged):
    criterion = judged.rubric.criteria.get(key="helpfulness")
    judged.scores.filter(criterion=criterion).delete()
    _refused(lambda: CriterionScore.objects.create(judgment=judged, criterion=criterion, score=0))


def test_it_accepts_the_scale_bounds(judged):
    criterion = judged.rubric.criteria.get(key="signed")
    score = judged.scores.get(criterion=criterion)
    for value in (0, 1):
        score.score = value
        score.save()
        assert CriterionScore.objects.get(pk=score.pk).score == value


def test_it_refuses_a_second_text_in_one_group_slot(demo):
    generation = Generation.objects.filter(revision=0).first()
    _refused(
        lambda: Generation.objects.create(group=generation.group, index=generation.index, messages=[], text="again")
    )


def test_a_revision_must_point_at_its_parent(demo):
    generation = Generation.objects.filter(revision=0).first()
    _refused(
        lambda: Generation.objects.create(
            group=generation.group,
            index=generation.index,
            revision=1,
            messages=[],
            text="orphan revision",
        )
    )


def test_a_revision_takes_the_next_revision_number_of_its_slot(demo):
    original = Generation.objects.filter(revision=0).first()
    first = record_services.generation_record(
        group=original.group,
        index=original.index,
        messages=original.messages,
        raw_text="better",
        producer=None,
        parent=original,
        source=Generation.Source.REVISION,
    )
    second = record_services.generation_record(
        group=original.group,
        index=original.index,
        messages=original.messages,
        raw_text="better still",
        producer=None,
        parent=first,
        source=Generation.Source.REVISION,
    )
    assert (first.revision, second.revision) == (1, 2)
    assert second.parent == first and first.parent == original


def test_slugs_are_unique(demo):
    _refused(lambda: Character.objects.create(name="Aria again", slug="aria", persona="x"))
    _refused(lambda: PromptSet.objects.create(name="again", slug="aria-demo"))


def test_a_judge_judgment_needs_a_producer_and_a_human_one_a_reviewer(demo):
    generation = Generation.objects.first()
    rubric = Judgment.objects.first().rubric
    _refused(lambda: Judgment.objects.create(generation=generation, rubric=rubric, source="judge", overall=0.5))
    _refused(lambda: Judgment.objects.create(generation=generation, rubric=rubric, source="human", overall=0.5))


def test_one_group_per_prompt_per_run(demo):
    group = Group.objects.first()
    _refused(lambda: Group.objects.create(run=group.run, prompt=group.prompt, character=group.character, size=2))


def test_a_criterion_scale_must_be_ordered(demo):
    criterion = Judgment.objects.first().rubric.criteria.first()
    criterion.scale_min, criterion.scale_max = 5, 1
    _refused(criterion.save)


def test_the_service_refuses_scores_that_do_not_cover_the_rubric(demo):
    from django.core.exceptions import ValidationError

    judgment = Judgment.objects.first()
    with pytest.raises(ValidationError, match="missing"):
        record_services.judgment_record(
            generation=judgment.generation,
            rubric=judgment.rubric,
            source="judge",
            scores={"in-character": 3},
            producer=judgment.producer,
        )


def test_overall_is_the_weighted_mean_of_rescaled_scores(demo):
    judgment = Judgment.objects.filter(generation__text__startswith="Find the Big Dipper").get()
    # in-character 5/5 (w2), helpfulness 5/5 (w1), concision 5/5 and no-loops 5/5 (rules, w1
    # each; 41 words, nothing repeated), not signed 0/1 (w0.5)
    assert judgment.overall == pytest.approx((2 + 1 + 1 + 1 + 0) / 5.5, abs=1e-6)  # stored to 6 places
    low = Judgment.objects.filter(generation__text__startswith="The North Star is the brightest").get()
    # in-character 2/5 (w2), helpfulness 1/5 (w1), concision 5/5, no-loops 5/5, not signed
    assert low.overall == pytest.approx((2 * 0.25 + 0 + 1 + 1 + 0) / 5.5, abs=1e-6)


def test_a_generation_snapshots_the_persona_it_was_made_from(demo):
    generation = Generation.objects.first()
    persona_then = generation.messages[0]["content"]
    Character.objects.filter(slug="aria").update(persona="A different persona")
    generation.refresh_from_db()
    assert generation.messages[0] == {"role": "system", "content": persona_then}
    assert persona_then != "A different persona"


def test_importing_a_group_records_think_tag_problems(demo):
    run = PipelineRun.objects.create(kind="import", status="succeeded")
    group = importers.group_import(
        data=GroupIn(
            character="aria",
            prompt_set="aria-demo",
            prompt="stars",
            completions=["<think>plan</think>answer", "<think>never closed"],
        ),
        run=run,
    )
    ok, unclosed = group.generations.order_by("index")
    assert (ok.text, ok.thinking, ok.think_valid) == ("answer", "plan", True)
    assert unclosed.think_valid is False and "unclosed_think_tag" in unclosed.think_issues


def test_character_create_takes_validated_input(db):
    character = catalogue_services.character_create(data=CharacterIn(name="Bo", slug="bo", persona="You are Bo."))
    assert character.system_message() == {"role": "system", "content": "You are Bo."}
