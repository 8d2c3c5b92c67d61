"""Judge runs over rubrics with rule criteria: the judge model is asked about the other
criteria only, the rules score theirs, and every stored judgment covers the whole rubric.
A rubric of rules only never calls a model."""

import pytest

from inference.backends.inprocess import InProcessBackend
from inference.tasks import execute
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn
from labelling.models import Generation, Judgment, PipelineRun
from labelling.runs import services as run_services
from shaping_core import rules, scoring
from tests.factories import generate_run
from tests.pipelines.conftest import wait_for
from tests.pipelines.test_runs import FINAL, start
from tests.triton_fixture import TINY_MODEL

SHORT = {"kind": "length", "unit": "words", "max": 6, "falloff": 6}
NO_TAGS = {"kind": "regex", "pattern": "<[a-z]+>", "must": "not_match"}


def _rubric(slug: str, *criteria: CriterionIn):
    return catalogue_services.rubric_create(data=RubricIn(slug=slug, name=slug, criteria=list(criteria)))


def _judge_criterion() -> CriterionIn:
    return CriterionIn(key="in_character", description="Sounds like Mira", scale_min=1, scale_max=5)


def _rule(key: str, rule: dict) -> CriterionIn:
    return CriterionIn(key=key, description=f"rule {key}", scale_min=1, scale_max=5, rule=rule)


class CountingJudge(InProcessBackend):
    """The real in-process engines, with the judge's requests counted and kept."""

    def __init__(self, *, refuse: bool = False):
        super().__init__(TINY_MODEL)
        self.asked: list[list[str]] = []
        self.refuse = refuse

    def judge(self, request):
        self.asked.append([c["key"] for c in request.rubric["criteria"]])
        if self.refuse:
            raise AssertionError("no model may be asked about a rubric of rules only")
        return super().judge(request)


def _assert_covered(run: PipelineRun, rubric, expected: int) -> None:
    criteria = list(rubric.criteria.all())
    judgments = Judgment.objects.filter(run=run, source=Judgment.Source.JUDGE).prefetch_related("scores__criterion")
    assert judgments.count() == expected
    for judgment in judgments:
        assert judgment.status == Judgment.Status.OK, judgment.error
        scores = {s.criterion.key: s.score for s in judgment.scores.all()}
        assert set(scores) == {c.key for c in criteria}
        for c in criteria:
            if c.is_rule:
                text = judgment.generation.text
                assert scores[c.key] == rules.score_rule(c.rule, text, c.scale_min, c.scale_max)
        assert judgment.overall == pytest.approx(scoring.overall(criteria, scores), abs=1e-6)


def test_a_triton_judge_run_stores_the_judges_and_the_rules_scores(story, consumer):
    character, prompt_set, _ = story(2)
    rubric = _rubric("mixed", _judge_criterion(), _rule("short", SHORT))
    run = wait_for(start(character, prompt_set, rubric, group_size=2), FINAL, log=consumer.log)
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    _assert_covered(run, rubric, expected=4)


def test_the_judge_model_is_asked_about_the_other_criteria_only(story):
    character, prompt_set, _ = story(1)
    rubric = _rubric("mixed", _judge_criterion(), _rule("short", SHORT), _rule("plain", NO_TAGS))
    run = generate_run(character=character, prompt_set=prompt_set, rubric=rubric, group_size=2)
    backend = CountingJudge()
    assert execute(run.pk, backend=backend) == PipelineRun.Status.SUCCEEDED
    assert backend.asked and all(keys == ["in_character"] for keys in backend.asked)
    _assert_covered(run, rubric, expected=2)


def test_a_rubric_of_rules_only_judges_without_any_model_call(story):
    character, prompt_set, _ = story(2)
    rubric = _rubric("rules-only", _rule("short", SHORT), _rule("plain", NO_TAGS))
    generated = generate_run(character=character, prompt_set=prompt_set, rubric=rubric, group_size=2)
    backend = CountingJudge(refuse=True)
    assert execute(generated.pk, backend=backend) == PipelineRun.Status.SUCCEEDED
    _assert_covered(generated, rubric, expected=4)
    judged, _ = run_services.run_start(kind="judge", rubric=rubric, source_run=generated, enqueue=False)
    assert execute(judged.pk, backend=backend) == PipelineRun.Status.SUCCEEDED
    _assert_covered(judged, rubric, expected=4)
    assert backend.asked == []
    assert Generation.objects.filter(group__run=generated).count() == 4
