"""Guardrails on decisions: a verdict needs EVALUATION_MIN_PROMPTS prompts, an evaluation is
labelled by the prompts it ran on (held out of the candidate's training or not), one rule
combines the judge's and the reviewers' verdicts, and a version not marked better on held-out
prompts is made current only once confirmed, with the same check on the page and the API."""

import pytest

from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import PromptIn, PromptSetIn
from labelling.datasets import services as dataset_services
from labelling.models import Evaluation, GeneratorVersion, PromptSet
from labelling.versions.evaluation import decisions, selectors, services
from labelling.versions.training import services as training_services
from tests.evaluation.fixtures import ran


@pytest.fixture
def trained(judged_run):
    """v2, trained (GRPO) from v1 on the run's prompts with a quarter of them held out."""
    dataset = dataset_services.dataset_build(
        dataset="aria",
        kind="grpo_prompts",
        filter={"runs": [judged_run["run"].pk], "rubric": "voice", "held_out": 0.25},
    )
    run, _ = training_services.train_start(dataset_version=dataset, method="grpo", params={"steps": 2}, enqueue=False)
    GeneratorVersion.objects.filter(train_run=run).update(status="ready")
    held = dataset_services.dataset_held_out_prompt_set(version=dataset)
    return {**judged_run, "dataset": dataset, "v2": GeneratorVersion.objects.get(train_run=run), "held": held}


def _evaluate(trained, prompt_set=None, **scores) -> Evaluation:
    """v2 against v1 on `prompt_set` (default: the held-out prompts), both sides run and judged
    (fixtures.ran: the candidate wins every prompt unless `scores` say otherwise)."""
    evaluation = services.evaluation_start(
        candidate=2,
        rubric=trained["rubric"],
        prompt_set=prompt_set,
        character=trained["run"].character,
        completions_per_prompt=3,
        enqueue=False,
    )
    ran(evaluation, trained["rubric"], **scores)
    return services.evaluation_finish(evaluation=evaluation)


def _copy_of_trained_prompts(trained) -> PromptSet:
    """The prompts v2 trained on, imported again under another slug: the same messages."""
    held = {p.metadata["held_out_from"] for p in trained["held"].prompts.all()}
    copy = catalogue_services.prompt_set_create(data=PromptSetIn(slug="harbour-again", name="Harbour again"))
    catalogue_services.prompts_add(
        prompt_set=copy,
        prompts=[PromptIn(id=p.external_id, messages=p.messages) for p in trained["prompts"] if p.pk not in held][:8],
    )
    return copy


def _api(client, user):
    headers = {"Authorization": f"Bearer {tokens.token_create(user=user, name='tests')[1]}"}
    return lambda method, path: getattr(client, method)(f"/api{path}", headers=headers)


def test_an_evaluation_is_labelled_by_the_prompts_it_ran_on(trained, client, admin_user, admin_client):
    held_out = _evaluate(trained)
    whole = _evaluate(trained, PromptSet.objects.get(slug="harbour"))
    again = _evaluate(trained, _copy_of_trained_prompts(trained))
    held = trained["held"].prompts.count()
    assert decisions.prompt_set_use(held_out) | {"text": ""} == {
        "prompt_set": trained["held"].slug,
        "prompts": held,
        "trained_on": 0,
        "kind": "held_out",
        "label": "held-out prompts",
        "text": "",
    }
    assert (decisions.prompt_set_use(whole)["kind"], decisions.prompt_set_use(whole)["trained_on"]) == (
        "mixed",
        40 - held,
    )
    assert decisions.prompt_set_use(again)["kind"] == "training"  # matched by their messages, not their ids

    api = _api(client, admin_user)
    assert api("get", f"/evaluations/{again.pk}").json()["prompt_set_use"]["label"] == "training prompts"
    lineage = api("get", "/model-versions/2").json()["against_parent"]
    # The held-out evaluation counts, though later ones ran on training prompts.
    assert (lineage["evaluation"], lineage["prompt_set_use"]["kind"]) == (held_out.pk, "held_out")

    page = admin_client.get("/models/").content.decode()
    assert f'<tr id="evaluation-{again.pk}">' in page
    row = page.split(f'<tr id="evaluation-{again.pk}">')[1].split("</tr>")[0]
    assert "harbour-again" in row and 'class="prompt-kind prompt-kind-training"' in row
    detail = admin_client.get(f"/evaluations/{again.pk}/").content.decode()
    assert 'id="prompt-set-warning"' in detail and "trained on 8 of these 8 prompts" in detail
    assert 'id="prompt-set-warning"' not in admin_client.get(f"/evaluations/{held_out.pk}/").content.decode()


def test_a_verdict_needs_the_minimum_number_of_prompts_and_says_so(trained, client, admin_user, admin_client, settings):
    evaluation = _evaluate(trained)
    n = evaluation.result["prompts"]
    assert evaluation.result["win_rate"]["low"] > 0.5 and n >= 6  # every prompt won
    api = _api(client, admin_user)
    assert api("get", f"/evaluations/{evaluation.pk}").json()["decision"]["verdict"] == "better"

    settings.EVALUATION_MIN_PROMPTS = n + 1
    decided = api("get", f"/evaluations/{evaluation.pk}").json()["decision"]
    reason = f"{n} prompts; a verdict needs at least {n + 1}"
    assert (decided["verdict"], decided["source"], decided["min_prompts"]) == ("undecided", "judge", n + 1)
    assert decided["judge"]["reason"] == reason and reason in decided["reason"]
    assert api("get", "/model-versions/2").json()["against_parent"]["verdict"] == "undecided"
    page = admin_client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'class="verdict verdict-undecided"' in page and reason in page
    assert reason in admin_client.get("/models/").content.decode()


@pytest.mark.parametrize(
    ("judge", "human", "verdict", "source"),
    [
        ((8, [0.6, 0.7, 0.9]), None, "better", "judge"),  # no blind A/B: the judge decides
        ((8, [0.6, 0.7, 0.9]), (2, [0.0, 0.1, 0.3]), "better", "judge"),  # too few prompts chosen on yet
        ((8, [0.6, 0.7, 0.9]), (6, [0.3, 0.45, 0.6]), "undecided", "human"),  # enough: the reviewers decide
        ((8, [0.3, 0.45, 0.6]), (6, [0.1, 0.2, 0.4]), "worse", "human"),
        ((3, [0.9, 1.0, 1.0]), None, "undecided", "judge"),  # the judge alone on too few prompts
    ],
)
def test_one_rule_combines_the_judges_verdict_with_the_reviewers(judge, human, verdict, source, settings):
    settings.EVALUATION_MIN_PROMPTS = 6

    def win(low, estimate, high):
        return {"low": low, "estimate": estimate, "high": high}

    result = {"prompts": judge[0], "win_rate": win(*judge[1])}
    figures = human and {"pairs": 10, "choices": human[0] * 2, "prompts": human[0], "win_rate": win(*human[1])}
    decided = decisions.decision(result, figures)
    assert (decided["verdict"], decided["source"]) == (verdict, source)
    assert decided["rule"].startswith("The blind A/B verdict decides once reviewers have chosen on at least 6 prompts")
    if source == "human" and decided["judge"]["verdict"] != verdict:
        assert f"the judge says {decided['judge']['verdict']}" in decided["reason"]


def test_no_comparison_yet_is_no_verdict():
    decided = decisions.decision(None, None)
    assert decided["verdict"] is None and "no comparison yet" in decided["reason"]


def test_better_on_training_prompts_alone_is_made_current_only_once_confirmed(
    trained, client, admin_user, admin_client
):
    _evaluate(trained, _copy_of_trained_prompts(trained))  # better, but on prompts it trained on
    v1 = GeneratorVersion.objects.get(number=1)
    reason = selectors.needs_confirmation(trained["v2"])
    assert "only on training prompts" in reason and "never on held-out prompts" in reason

    api = _api(client, admin_user)
    assert api("get", "/model-versions/2").json()["confirm_needed"] == reason
    asked = api("post", "/model-versions/2/current")
    assert asked.status_code == 409
    assert asked.json()["detail"] == f"{reason}; send confirm=true to make it current anyway"
    assert asked.json()["errors"] == {"confirm": "send confirm=true to make it current anyway"}

    # The page asks the same question, changing nothing until it is answered.
    page = admin_client.get("/models/").content.decode()
    assert f"Asks to confirm: {reason}." in page
    question = admin_client.post("/models/", {"action": "make_current", "version": "2"})
    assert question.status_code == 409
    text = question.content.decode()
    assert 'id="confirm-current"' in text and f"<p>{reason}.</p>" in text
    assert 'name="confirm" value="yes"' in text
    assert GeneratorVersion.objects.get(is_current=True) == v1

    made = admin_client.post("/models/", {"action": "make_current", "version": "2", "confirm": "yes"})
    assert made.status_code == 302 and made["Location"] == "/models/#model-version-2"
    assert GeneratorVersion.objects.get(is_current=True) == trained["v2"]
    assert "Version 2 is current" in admin_client.get("/models/").content.decode()
    assert api("get", "/model-versions/2").json()["confirm_needed"] is None  # current: nothing to confirm
    assert api("post", "/model-versions/2/current").status_code == 200  # already current: no question
    # And back (a rollback to the first version asks nothing: it has no parent), over the API.
    assert api("post", "/model-versions/1/current").status_code == 200


def test_better_on_held_out_prompts_is_made_current_without_a_question(trained, client, admin_user, admin_client):
    _evaluate(trained)
    assert selectors.needs_confirmation(trained["v2"]) is None
    api = _api(client, admin_user)
    assert api("get", "/model-versions/2").json()["confirm_needed"] is None
    made = admin_client.post("/models/", {"action": "make_current", "version": "2"})
    assert made.status_code == 302 and GeneratorVersion.objects.get(is_current=True) == trained["v2"]


def test_worse_on_held_out_prompts_asks_with_the_verdict_and_its_reason(trained, client, admin_user):
    _evaluate(trained, candidate=[1, 1, 1], baseline=[5, 5, 5])
    reason = selectors.needs_confirmation(trained["v2"])
    assert reason.startswith("version 2 is worse against v1 on held-out prompts: the judge decides (no blind A/B)")
    assert "lies below 0.5" in reason
    assert _api(client, admin_user)("post", "/model-versions/2/current").status_code == 409


def test_a_version_that_is_not_ready_is_refused_by_the_page_as_by_the_api(trained, admin_client):
    GeneratorVersion.objects.filter(number=2).update(status="failed")
    refused = admin_client.post("/models/", {"action": "make_current", "version": "2", "confirm": "yes"}, follow=True)
    assert "Version 2 was not made current: status: version 2 of qwen3 is failed" in refused.content.decode()
    assert GeneratorVersion.objects.get(is_current=True).number == 1
    assert admin_client.post("/models/", {"action": "make_current", "version": "9"}).status_code == 404


def test_the_evaluate_button_starts_one_evaluation_on_the_held_out_prompts(trained, admin_client):
    page = admin_client.get("/models/").content.decode()
    form = page.split('id="evaluate-v2"')[1].split("</details>")[0]
    assert "<summary>Evaluate against v1</summary>" in form
    assert f'<option value="{trained["rubric"].pk}" selected>voice v1</option>' in form  # the rubric it trained on
    assert f'<option value="{trained["run"].character.pk}" selected>Aria (aria)</option>' in form
    assert '<option value="">the prompts aria v1 held out (25%)</option>' in form
    sent = {
        "action": "evaluate",
        "version": "2",
        "rubric": str(trained["rubric"].pk),
        "character": str(trained["run"].character.pk),
        "prompt_set": "",
        "human_pairs": "2",
        "idempotency_key": "k1",
    }
    started = admin_client.post("/models/", sent)
    evaluation = Evaluation.objects.get()
    assert started.status_code == 302 and started["Location"] == f"/evaluations/{evaluation.pk}/"
    assert (evaluation.candidate.number, evaluation.baseline.number) == (2, 1)
    assert (evaluation.prompt_set, evaluation.human_pairs) == (trained["held"], 2)
    assert admin_client.post("/models/", sent).status_code == 302 and Evaluation.objects.count() == 1  # a double submit


def test_the_evaluate_button_shows_refusals_under_their_field_and_starts_nothing(trained, admin_client):
    sent = {"action": "evaluate", "version": "2", "rubric": "", "character": "", "prompt_set": "", "human_pairs": "0"}
    refused = admin_client.post("/models/", sent)
    text = refused.content.decode()
    assert refused.status_code == 400 and Evaluation.objects.count() == 0
    assert 'id="action-error"' in text and "rubric: choose the rubric that scores both sides" in text
    assert '<details class="evaluate-version" id="evaluate-v2" open>' in text
    refused = admin_client.post("/models/", {**sent, "rubric": str(trained["rubric"].pk), "human_pairs": "-1"})
    assert refused.status_code == 400 and "a whole number is required" in refused.content.decode()
    refused = admin_client.post("/models/", {**sent, "rubric": "99999"})
    assert refused.status_code == 400 and "no such choice" in refused.content.decode()
    assert Evaluation.objects.count() == 0


def test_only_admins_use_the_version_forms(trained, reviewer_client):
    assert reviewer_client.post("/models/", {"action": "make_current", "version": "2"}).status_code == 403
    assert GeneratorVersion.objects.get(is_current=True).number == 1


def test_an_unknown_action_changes_nothing_and_says_so(trained, admin_client):
    answer = admin_client.post("/models/", {"action": "retire", "version": "2"}, follow=True)
    assert "Unknown action" in answer.content.decode()
    assert GeneratorVersion.objects.get(number=2).status == "ready"
    assert GeneratorVersion.objects.get(is_current=True).number == 1
