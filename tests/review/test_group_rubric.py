"""Which rubric a group is reviewed against: the judge's (latest version), else the run's,
else the one the character was last judged with, else the newest there is."""

from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, RubricIn
from labelling.models import PipelineRun, Prompt
from labelling.records import services as record_services
from labelling.review import selectors as review_selectors
from labelling.runs import services as run_services


def _rubric(slug: str):
    return catalogue_services.rubric_create(
        data=RubricIn(
            slug=slug,
            name=slug.title(),
            criteria=[CriterionIn(key="tone", description="Tone", scale_min=1, scale_max=3)],
        )
    )


def test_a_judged_group_uses_the_latest_version_of_the_judges_rubric(world):
    group = world["made"][("a", 0)].group
    other = _rubric("other")  # newer, and the run's, but the judge did not use it
    PipelineRun.objects.filter(pk=world["run"].pk).update(rubric=other)
    assert review_selectors.group_rubric(group) == world["rubric"]
    edited = catalogue_services.rubric_update(
        rubric=world["rubric"],
        data=RubricIn(slug="voice", name="Voice", criteria=[CriterionIn(key="voice", description="In voice, v2")]),
    )
    assert edited.version == 2
    assert review_selectors.group_rubric(group) == edited != other


def test_an_unjudged_group_uses_its_runs_rubric(world):
    other = _rubric("other")
    run, _ = run_services.run_start(
        kind="generate",
        character=world["run"].character,
        prompt_set=world["run"].prompt_set,
        rubric=other,
        group_size=2,
        enqueue=False,
    )
    group = record_services.group_for(run=run, prompt=Prompt.objects.get(external_id="a"))
    assert review_selectors.group_rubric(group) == other


def test_an_unjudged_group_of_a_run_without_rubric_uses_the_characters_last_then_the_newest(world):
    _rubric("other")
    run, _ = run_services.run_start(
        kind="generate",
        character=world["run"].character,
        prompt_set=world["run"].prompt_set,
        rubric=None,
        group_size=2,
        enqueue=False,
    )
    group = record_services.group_for(run=run, prompt=Prompt.objects.get(external_id="a"))
    assert review_selectors.group_rubric(group) == world["rubric"]  # what the character was judged with
    group.character = catalogue_services.character_create(
        data=CharacterIn(slug="nobody", name="Nobody", persona="No one.")
    )
    group.save()
    assert review_selectors.group_rubric(group).slug == "other"  # never judged: the newest rubric
