"""A judgment corrected in the admin goes through the services' rules: the scores are checked
against the rubric, and the overall score and the group's queue state follow."""

from django.urls import reverse

from labelling.models import CriterionScore, Group, Judgment


def _change(admin_client, judgment: Judgment, score) -> object:
    url = reverse("admin:labelling_judgment_change", args=[judgment.pk])
    scores = list(judgment.scores.order_by("pk"))
    data = {
        "rationale": "corrected",
        "rank": "",
        "scores-TOTAL_FORMS": str(len(scores)),
        "scores-INITIAL_FORMS": str(len(scores)),
        "scores-MIN_NUM_FORMS": "0",
        "scores-MAX_NUM_FORMS": "0",
    }
    for i, s in enumerate(scores):
        data[f"scores-{i}-id"] = str(s.pk)
        data[f"scores-{i}-judgment"] = str(judgment.pk)
        data[f"scores-{i}-score"] = str(score)
    return admin_client.post(url, data)


def test_editing_a_score_recomputes_the_overall_and_the_queue_state(admin_client, world):
    judgment = Judgment.objects.get(generation=world["made"][("b", 0)])  # the tied group: 4 and 4
    group = judgment.generation.group
    assert Group.objects.get(pk=group.pk).queue_bucket == 0  # no signal: the judge cannot separate them
    response = _change(admin_client, judgment, 1)
    assert response.status_code == 302, response.content.decode()[:2000]
    judgment.refresh_from_db()
    assert judgment.overall == 0.0 and judgment.rationale == "corrected"
    assert Group.objects.get(pk=group.pk).queue_bucket != 0  # now they differ: it left the no-signal bucket


def test_a_score_outside_the_scale_is_refused_and_changes_nothing(admin_client, world):
    judgment = Judgment.objects.get(generation=world["made"][("a", 2)])
    response = _change(admin_client, judgment, 9)
    assert response.status_code == 200
    assert "9 is outside 1..5" in response.content.decode()
    judgment.refresh_from_db()
    assert judgment.overall == 1.0 and judgment.rationale == ""
    assert list(CriterionScore.objects.filter(judgment=judgment).values_list("score", flat=True)) == [5]


def test_judgments_are_not_added_by_hand(admin_client, world):
    assert admin_client.get(reverse("admin:labelling_judgment_add")).status_code == 403
