"""The queue serves the groups where a human changes the training data most first,
and the reviewer can see and switch the order."""

from labelling.models import Generation, Group, Judgment, Rubric
from labelling.records import queue_state
from labelling.records import services as record_services
from labelling.review import selectors as review_selectors
from labelling.runs import services as run_services
from tests.review.conftest import held


def _prompt(group: Group) -> str:
    return group.prompt.external_id


def test_signal_first_serves_the_group_whose_judge_rewards_are_all_equal(demo, reviewer):
    queue = list(review_selectors.review_queue(reviewer=reviewer))
    assert _prompt(queue[0]) == "packing" and queue[0].bucket == queue_state.BUCKET_NO_SIGNAL
    assert [g.bucket for g in queue[1:]] == [queue_state.BUCKET_REST] * 4


def test_fifo_serves_the_oldest_group_first(demo, reviewer):
    queue = list(review_selectors.review_queue(reviewer=reviewer, policy="fifo"))
    assert [_prompt(g) for g in queue] == ["stars", "lonely", "human", "packing", "nebula"]


def test_disagreement_comes_before_a_failed_judgment_before_the_rest(demo, reviewer, admin_user):
    rubric = Rubric.objects.get(slug="aria-voice")
    stars, lonely = Group.objects.get(prompt__external_id="stars"), Group.objects.get(prompt__external_id="lonely")
    # A human scored lonely's best completion (judge: 0.94) at the bottom of the scale.
    lonely.overlap_target = 2
    lonely.save()
    best = Generation.objects.get(group=lonely, index=0)
    record_services.judgment_record(
        generation=best,
        rubric=rubric,
        source=Judgment.Source.HUMAN,
        reviewer=admin_user,
        scores={"in-character": 1, "helpfulness": 1},
    )
    judge = Judgment.objects.filter(source="judge").first().producer
    record_services.judgment_record_failure(
        generation=Generation.objects.get(group=stars, index=0),
        rubric=rubric,
        producer=judge,
        raw_output="not json",
        error="unparseable",
    )
    queue = [_prompt(g) for g in review_selectors.review_queue(reviewer=reviewer)]
    assert queue == ["packing", "lonely", "stars", "human", "nebula"]


def test_a_group_still_being_generated_is_not_offered(demo, reviewer):
    packing = Group.objects.get(prompt__external_id="packing")
    run, _ = run_services.run_start(
        kind="generate", character=packing.character, prompt_set=packing.prompt.prompt_set, group_size=3, enqueue=False
    )
    group = record_services.group_for(run=run, prompt=packing.prompt)
    for index in range(2):  # two of three completions are in
        record_services.generation_record(
            group=group, index=index, messages=[], raw_text=f"answer {index}", producer=None, run=run
        )
    assert group.pk not in [g.pk for g in review_selectors.review_queue(reviewer=reviewer)]
    record_services.generation_record(group=group, index=2, messages=[], raw_text="answer 2", producer=None, run=run)
    assert group.pk in [g.pk for g in review_selectors.review_queue(reviewer=reviewer)]


def test_the_stored_queue_state_matches_a_recomputation(demo, reviewer, admin_user):
    """Every writer keeps ready/bucket current: recomputing from scratch changes nothing."""
    test_disagreement_comes_before_a_failed_judgment_before_the_rest(demo, reviewer, admin_user)
    assert queue_state.groups_queue_refresh(Group.objects.values_list("pk", flat=True)) == 0


def test_the_queue_page_shows_the_policy_and_the_counts_per_bucket(reviewer_client, demo):
    page = reviewer_client.get("/review/").content.decode()
    assert 'aria-current="true" data-policy="signal"' in page
    assert '<strong data-count="total">4</strong> waiting' in page  # five, one held
    assert "<strong>4</strong> Everything else, oldest first" in page


def test_the_policy_can_be_switched_and_is_remembered(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/?policy=fifo")
    assert _prompt(held(reviewer).group) == "stars"
    page = reviewer_client.get("/review/").content.decode()
    assert 'aria-current="true" data-policy="fifo"' in page


def test_an_unknown_policy_falls_back_to_the_default(reviewer_client, reviewer, demo):
    assert reviewer_client.get("/review/?policy=random").status_code == 200
    assert _prompt(held(reviewer).group) == "packing"


def test_the_dashboard_links_to_the_queue_with_its_count(reviewer_client, demo):
    page = reviewer_client.get("/").content.decode()
    assert 'href="/review/"' in page and "<strong>5</strong><span><a" in page


def test_an_empty_queue_says_so(reviewer_client, db):
    page = reviewer_client.get("/review/").content.decode()
    assert "Nothing to review" in page
