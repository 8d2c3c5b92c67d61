"""Reviewing against a rubric with rule criteria: reviewers score the other criteria only; the
page shows the rules' scores read-only and the submission fills them in, so every human
judgment covers the whole rubric."""

import uuid

import pytest

from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn
from labelling.models import Generation, Judgment
from labelling.review import selectors as review_selectors
from shaping_core import rules, scoring
from tests.review.conftest import held

SHORT = {"kind": "length", "unit": "words", "max": 40}
MENTIONS_TEA = {"kind": "keywords", "include": ["tea"]}


def _with_rules(*extra: CriterionIn, keep: bool = True):
    """The demo rubric's next version, with the rule criteria added (or only them)."""
    latest = catalogue_selectors.rubric_latest("aria-voice")
    spec = RubricIn.model_validate({k: v for k, v in latest.as_spec().items() if k != "version"})
    criteria = [*spec.criteria, *extra] if keep else list(extra)
    return catalogue_services.rubric_update(rubric=latest, data=spec.model_copy(update={"criteria": criteria}))


def _short() -> CriterionIn:
    return CriterionIn(key="short", description="At most 40 words", scale_min=0, scale_max=1, rule=SHORT)


def _form(assignment, rubric, score: int = 3) -> dict:
    data = {"submission_id": str(uuid.uuid4())}
    for generation in review_selectors.review_generations(assignment):
        for c in rubric.criteria.all():
            if not c.is_rule:
                data[f"score-{generation.pk}-{c.key}"] = str(min(score, c.scale_max))
    return data


@pytest.fixture
def ruled(demo):
    return _with_rules(_short())


def test_the_page_shows_rule_criteria_scored_and_read_only(reviewer_client, reviewer, ruled):
    page = reviewer_client.get("/review/").content.decode()
    assignment = held(reviewer)
    assert review_selectors.group_rubric(assignment.group) == ruled
    assert page.count('class="criterion rule" data-key="short"') == len(assignment.shown_order)
    assert 'name="score-' in page  # the other criteria are the reviewer's
    assert not any(f'name="score-{gid}-short"' in page for gid in assignment.shown_order)
    for gid in assignment.shown_order:
        expected = rules.score_rule(SHORT, Generation.objects.get(pk=gid).text, 0, 1)
        assert f'data-score="{expected}"' in page


def test_a_submission_without_the_rule_scores_stores_them_from_the_rules(reviewer_client, reviewer, ruled):
    reviewer_client.get("/review/")
    assignment = held(reviewer)
    response = reviewer_client.post(f"/review/{assignment.pk}/submit", _form(assignment, ruled))
    assert response.status_code == 302
    judgments = Judgment.objects.filter(source=Judgment.Source.HUMAN, rubric=ruled).prefetch_related("scores")
    assert judgments.count() == len(assignment.shown_order)
    criteria = list(ruled.criteria.all())
    for judgment in judgments:
        scores = {s.criterion.key: s.score for s in judgment.scores.all()}
        assert set(scores) == {c.key for c in criteria}
        assert scores["short"] == rules.score_rule(SHORT, judgment.generation.text, 0, 1)
        assert judgment.overall == pytest.approx(scoring.overall(criteria, scores), abs=1e-6)


def test_a_posted_score_for_a_rule_criterion_is_replaced_by_the_rules(reviewer_client, reviewer, ruled):
    reviewer_client.get("/review/")
    assignment = held(reviewer)
    data = _form(assignment, ruled)
    for gid in assignment.shown_order:
        data[f"score-{gid}-short"] = "0"
    reviewer_client.post(f"/review/{assignment.pk}/submit", data)
    for judgment in Judgment.objects.filter(source=Judgment.Source.HUMAN):
        stored = judgment.scores.get(criterion__key="short").score
        assert stored == rules.score_rule(SHORT, judgment.generation.text, 0, 1)


def test_a_rubric_of_rules_only_is_submitted_with_no_scores_at_all(reviewer_client, reviewer, demo):
    rubric = _with_rules(_short(), CriterionIn(key="tea", description="Mentions tea", rule=MENTIONS_TEA), keep=False)
    page = reviewer_client.get("/review/").content.decode()
    assignment = held(reviewer)
    assert 'type="radio"' not in page
    response = reviewer_client.post(f"/review/{assignment.pk}/submit", {"submission_id": str(uuid.uuid4())})
    assert response.status_code == 302
    judgments = Judgment.objects.filter(source=Judgment.Source.HUMAN, rubric=rubric)
    assert judgments.count() == len(assignment.shown_order)
    assert all(j.scores.count() == 2 for j in judgments)


def test_a_missing_score_for_a_reviewer_criterion_is_still_refused(reviewer_client, reviewer, ruled):
    reviewer_client.get("/review/")
    assignment = held(reviewer)
    data = _form(assignment, ruled)
    del data[f"score-{assignment.shown_order[0]}-helpfulness"]
    response = reviewer_client.post(f"/review/{assignment.pk}/submit", data)
    assert response.status_code == 400 and "helpfulness" in response.content.decode()
    assert not Judgment.objects.filter(source=Judgment.Source.HUMAN).exists()


def test_model_output_in_a_rule_rubric_page_is_escaped(reviewer_client, reviewer, ruled):
    reviewer_client.get("/review/")
    assignment = held(reviewer)
    Generation.objects.filter(pk=assignment.shown_order[0]).update(text='<script>alert("x")</script>')
    page = reviewer_client.get("/review/").content.decode()
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;" in page
