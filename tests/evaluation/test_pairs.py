"""Blind A/B: an evaluation's pairs reach the queue once both sides have run; reviewers hold
them under leases, never see the versions before choosing, choose once whatever the retries;
the human figures (win rate, agreement with the judge, side bias) follow from the choices, and
decisive pairs feed the DPO export with origin "ab"."""

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from labelling.access import tokens
from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.models import ABPair, GeneratorVersion, PairChoice, PipelineRun, PromptSet
from labelling.review.services import ReviewRefused
from labelling.versions.evaluation import pairs, services
from shaping_core.stats import HumanChoice, cohen_kappa, human_compare
from tests.conftest import _make_user
from tests.evaluation.fixtures import ab_evaluation, ran
from tests.review.test_races import at_once


@pytest.fixture
def ab(world):
    return ab_evaluation(rubric="voice", prompt_set="keeper", human_pairs=5)


def choose(reviewer, choice: str) -> PairChoice:
    hold = pairs.pair_claim_next(reviewer=reviewer)
    assert hold is not None
    assert pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice=choice, submission_id=uuid.uuid4())
    return PairChoice.objects.get(pk=hold.pk)


def for_candidate(hold: PairChoice) -> str:
    return "left" if hold.candidate_left else "right"


def test_pairs_pair_the_same_prompt_and_seed_slot_and_are_sent_once(ab):
    rows = list(ab.pairs.select_related("candidate__group", "baseline__group"))
    assert len(rows) == 5  # of 2 prompts x 3 slots
    for p in rows:
        assert p.candidate.group.run_id == ab.candidate_run_id and p.baseline.group.run_id == ab.baseline_run_id
        assert p.candidate.group.prompt_id == p.baseline.group.prompt_id == p.prompt_id
        assert p.candidate.index == p.baseline.index
    slots = sorted(p.candidate.index for p in rows)
    assert slots == [0, 0, 1, 1, 2]  # slot 0 of every prompt before slot 1 of any
    services.evaluation_finish(evaluation=ab)
    assert pairs.pairs_create(ab) == 5 and ab.pairs.count() == 5  # again: nothing added


def test_a_run_finishing_in_the_worker_sends_the_pairs(world, django_capture_on_commit_callbacks):
    from inference import execution

    GeneratorVersion.objects.create(number=2, parent_id=GeneratorVersion.objects.get(number=1).pk, status="ready")
    evaluation = services.evaluation_start(
        candidate=2, prompt_set=PromptSet.objects.get(slug="keeper"), rubric=world["rubric"], human_pairs=2
    )
    ran(evaluation, world["rubric"])
    PipelineRun.objects.filter(pk=evaluation.candidate_run_id).update(status="running", execution=1)
    with django_capture_on_commit_callbacks(execute=True):  # the hook runs once the finish commits
        execution.run_finish(run_id=evaluation.candidate_run_id, execution=1, done=6)
    evaluation.refresh_from_db()
    assert evaluation.result is not None and evaluation.pairs.count() == 2


def test_versions_stay_hidden_until_the_reviewer_has_chosen(ab, reviewer_client, reviewer):
    page = reviewer_client.get("/review/ab/").content.decode()
    hold = PairChoice.objects.get(reviewer=reviewer)
    shown = pairs.pair_shown(hold)
    assert 'id="ab-form"' in page and shown.left.text in page and shown.right.text in page
    assert page.index(shown.left.text) < page.index(shown.right.text)  # A left, B right, as recorded
    assert not re.search(r"\bv[12]\b", page)  # (a csrf token may hold "v1" inside a word)
    answer = reviewer_client.post(
        f"/review/ab/{hold.pk}/choose", {"choice": "left", "submission_id": str(uuid.uuid4())}, HTTP_HX_REQUEST="true"
    ).content.decode()
    left, right = ("v2", "v1") if hold.candidate_left else ("v1", "v2")
    assert f"A was {left}, B was {right}" in answer
    assert PairChoice.objects.get(pk=hold.pk).choice == "left"


def test_sides_are_shuffled_per_reviewer_and_stable_on_reload(ab, reviewer):
    others = [_make_user(f"r{i}", "reviewer") for i in range(12)]
    ABPair.objects.update(overlap_target=20)
    sides = []
    for who in others:
        hold = pairs.pair_claim_next(reviewer=who)
        assert pairs.pair_claim_next(reviewer=who).pk == hold.pk  # a reload: the same pair, same sides
        sides.append(hold.candidate_left)
    assert True in sides and False in sides


def test_overlap_and_leases_work_as_for_groups(ab, reviewer):
    ABPair.objects.exclude(pk=ab.pairs.first().pk).delete()
    other = _make_user("rob", "reviewer")
    hold = pairs.pair_claim_next(reviewer=reviewer)
    assert pairs.pair_claim_next(reviewer=other) is None  # overlap 1: the one seat is held
    PairChoice.objects.filter(pk=hold.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    taken = pairs.pair_claim_next(reviewer=other)
    assert taken is not None and taken.pair_id == hold.pair_id  # the lapsed seat went back to the queue
    with pytest.raises(ReviewRefused, match="expired"):
        pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice="tie", submission_id=uuid.uuid4())
    choose(other, "tie")
    assert ABPair.objects.get().choice_count == 1
    assert pairs.pair_claim_next(reviewer=reviewer) is None  # chosen on by its overlap: closed


def test_a_retried_choice_is_stored_once_and_bad_choices_change_nothing(ab, reviewer):
    hold = pairs.pair_claim_next(reviewer=reviewer)
    with pytest.raises(ValidationError):
        pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice="c", submission_id=uuid.uuid4())
    sid = uuid.uuid4()
    assert pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice="left", submission_id=sid) is True
    assert pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice="left", submission_id=sid) is False
    with pytest.raises(ReviewRefused, match="already"):
        pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice="right", submission_id=uuid.uuid4())
    assert ABPair.objects.get(pk=hold.pair_id).choice_count == 1
    assert PairChoice.objects.get(pk=hold.pk).choice == "left"


@pytest.mark.django_db(transaction=True)
def test_two_tabs_hold_one_pair_and_a_double_submit_counts_once(ab, reviewer):
    first, second = at_once(*[lambda: pairs.pair_claim_next(reviewer=reviewer)] * 2)
    assert isinstance(first, PairChoice) and first.pk == second.pk
    sid = uuid.uuid4()
    results = at_once(
        *[lambda: pairs.pair_choose(choice_id=first.pk, reviewer=reviewer, choice="tie", submission_id=sid)] * 2
    )
    assert sorted(results) == [False, True], results
    assert ABPair.objects.get(pk=first.pair_id).choice_count == 1


def test_human_figures_from_the_choices(ab, reviewer, admin_client, admin_user):
    other = _make_user("rob", "reviewer")
    ABPair.objects.update(overlap_target=2)
    for _ in range(5):  # rob always picks the candidate; the reviewer always the left answer
        hold = pairs.pair_claim_next(reviewer=other)
        pairs.pair_choose(choice_id=hold.pk, reviewer=other, choice=for_candidate(hold), submission_id=uuid.uuid4())
        choose(reviewer, "left")
    h = pairs.human_figures(ab)
    mine = PairChoice.objects.filter(reviewer=reviewer)
    left_for_candidate = sum(1 for c in mine if c.candidate_left)
    assert (h["pairs"], h["choices"], h["prompts"]) == (5, 10, 2)
    assert h["wins"] == 5 + left_for_candidate and h["losses"] == 5 - left_for_candidate
    assert h["side_bias_by_reviewer"][reviewer.username]["left_share"] == 1.0
    assert h["side_bias_by_reviewer"]["rob"]["left_wins"] == sum(
        1 for c in PairChoice.objects.filter(reviewer=other) if c.candidate_left
    )
    # The judge prefers the candidate on slots 0 and 1, the baseline on slot 2: rob agrees on 4 of 5 pairs.
    judge_side = {p.pk: p.candidate.index < 2 for p in ab.pairs.select_related("candidate")}
    agree = sum(1 for c in PairChoice.objects.filter(reviewer=other) if judge_side[c.pair_id])
    assert h["judge_agreement"]["choices"] == 10
    assert h["judge_agreement"]["same_side"] == pytest.approx(
        (agree + sum(1 for c in mine if (c.candidate_left == judge_side[c.pair_id]))) / 10
    )
    page = admin_client.get(f"/evaluations/{ab.pk}/").content.decode()
    assert 'class="human-win-rate"' in page and "Cohen" in page and "left won" in page
    models_page = admin_client.get("/models/").content.decode()
    assert "(blind A/B)" in models_page and "10 choices on 5 pairs" in models_page
    token = tokens.token_create(user=admin_user, name="t")[1]
    body = admin_client.get(f"/api/evaluations/{ab.pk}", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["human"]["choices"] == 10 and body["human"]["win_rate"]["level"] == 0.95


def test_decisive_pairs_feed_the_dpo_export_as_ab_pairs(ab, reviewer, tmp_path, settings):
    settings.DATA_DIR = tmp_path
    hold = pairs.pair_claim_next(reviewer=reviewer)
    pairs.pair_choose(choice_id=hold.pk, reviewer=reviewer, choice=for_candidate(hold), submission_id=uuid.uuid4())
    choose(reviewer, "tie")  # a tie makes no pair
    version = dataset_services.dataset_build(
        dataset="ab",
        kind="dpo",
        filter={"runs": [ab.candidate_run_id, ab.baseline_run_id], "rubric": "voice", "min_margin": 0.99},
    )
    rows = [json.loads(line) for line in storage.dataset_path(version).read_text().splitlines()]
    ab_rows = [r for r in rows if r["origin"] == "ab"]
    pair = ABPair.objects.get(pk=hold.pair_id)
    assert len(ab_rows) == 1, rows
    assert ab_rows[0]["chosen"][0]["content"] == pair.candidate.raw_text
    assert ab_rows[0]["rejected"][0]["content"] == pair.baseline.raw_text and ab_rows[0]["margin"] == 1.0


def test_the_api_hands_out_pairs_blind_and_reveals_after_the_choice(ab, reviewer, outsider, client):
    def post(user, path, body=None):
        headers = {"Authorization": f"Bearer {tokens.token_create(user=user, name='t')[1]}"} if user else {}
        return client.post(f"/api{path}", json.dumps(body or {}), content_type="application/json", headers=headers)

    assert post(None, "/review/pairs/next").status_code == 401
    assert post(outsider, "/review/pairs/next").status_code == 403
    pair = post(reviewer, "/review/pairs/next").json()
    assert [a["label"] for a in pair["answers"]] == ["A", "B"] and "v2" not in json.dumps(pair)
    sid = str(uuid.uuid4())
    chosen = post(reviewer, f"/review/pairs/{pair['choice_id']}/choose", {"choice": "a", "submission_id": sid})
    assert (
        chosen.status_code == 200
        and chosen.json()["stored"] is True
        and {chosen.json()["a"], chosen.json()["b"]} == {1, 2}
    )
    again = post(reviewer, f"/review/pairs/{pair['choice_id']}/choose", {"choice": "a", "submission_id": sid})
    assert again.json()["stored"] is False
    other = _make_user("rob", "reviewer")
    assert (
        post(other, f"/review/pairs/{pair['choice_id']}/choose", {"choice": "a", "submission_id": sid}).status_code
        == 404
    )
    assert (
        post(reviewer, f"/review/pairs/{pair['choice_id']}/choose", {"choice": "c", "submission_id": sid}).status_code
        == 422
    )
    nxt = post(reviewer, "/review/pairs/next").json()
    assert post(reviewer, f"/review/pairs/{nxt['choice_id']}/skip").status_code == 204
    assert post(reviewer, f"/review/pairs/{nxt['choice_id']}/skip").status_code == 409


def test_kappa_and_side_bias_by_hand():
    assert cohen_kappa([("a", "a"), ("b", "b")]) == 1.0
    assert cohen_kappa([("a", "b"), ("b", "a")]) == -1.0
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None  # no variation: chance agreement is certain
    # 3 items agree of 4; p_e = .5*.5 + .5*.5 = .5 -> (0.75 - 0.5) / 0.5
    assert cohen_kappa([("a", "a"), ("a", "a"), ("b", "b"), ("b", "a")]) == pytest.approx(
        (0.75 - (0.5 * 0.75 + 0.5 * 0.25)) / (1 - (0.5 * 0.75 + 0.5 * 0.25))
    )
    choices = [
        HumanChoice(prompt="p1", reviewer="x", outcome=1.0, candidate_left=True, judge=1.0),
        HumanChoice(prompt="p1", reviewer="x", outcome=0.0, candidate_left=False, judge=0.0),
        HumanChoice(prompt="p2", reviewer="y", outcome=0.5, candidate_left=True, both_bad=True),
    ]
    h = human_compare(choices)
    assert (h["wins"], h["losses"], h["ties"], h["both_bad"]) == (1, 1, 0, 1)
    assert h["side_bias"] == {"decisive": 2, "left_wins": 2, "left_share": 1.0, "p": 0.5}
    assert h["judge_agreement"] == {"choices": 2, "same_side": 1.0, "kappa": 1.0}
    assert h["win_rate"]["estimate"] == pytest.approx(0.5)  # p1: (1 + 0) / 2; p2: 0.5


def test_human_pairs_out_of_range_are_refused(world):
    GeneratorVersion.objects.create(number=2, parent_id=GeneratorVersion.objects.get(number=1).pk, status="ready")
    with pytest.raises(ValidationError, match="between 0 and"):
        services.evaluation_start(
            candidate=2, prompt_set=PromptSet.objects.get(slug="keeper"), rubric=world["rubric"], human_pairs=-1
        )
