"""Starting an evaluation: both sides queued with the same seeds and sampling, refusals that
name the field and create nothing; the comparison from the judges' scores once both ran."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from labelling.models import Evaluation, GeneratorVersion, PipelineRun, PromptSet
from labelling.records import services as record_services
from labelling.versions.evaluation import services


@pytest.fixture
def v2(world):
    return GeneratorVersion.objects.create(
        number=2, parent_id=GeneratorVersion.objects.get(number=1).pk, status="ready"
    )


def _start(world, **kwargs):
    return services.evaluation_start(
        prompt_set=PromptSet.objects.get(slug="keeper"), rubric=world["rubric"], enqueue=False, **kwargs
    )


def test_both_sides_run_the_same_prompts_with_the_same_seed_and_sampling(world, v2):
    evaluation = _start(world, candidate=2, completions_per_prompt=3, seed=5)
    assert (evaluation.candidate.number, evaluation.baseline.number) == (2, 1)  # the parent by default
    cand, base = evaluation.candidate_run, evaluation.baseline_run
    assert (cand.params["generator_version"], base.params["generator_version"]) == (2, 1)
    assert cand.params["sampling"] == base.params["sampling"] and cand.params["sampling"]["seed"] == 5
    assert cand.group_size == base.group_size == 3 and cand.rubric == base.rubric == world["rubric"]
    assert cand.character.slug == "mira"  # the prompt set's last run's character
    assert evaluation.judge["rubric"] == "voice@v1" and len(evaluation.judge["rubric_sha256"]) == 64


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"candidate": 7}, "candidate", "there is no version 7"),
        ({"candidate": 1}, "baseline", "has no parent"),
        ({"candidate": 2, "baseline": 2}, "baseline", "another version"),
        ({"candidate": 2, "completions_per_prompt": 0}, "completions_per_prompt", "between 1 and 16"),
    ],
)
def test_refusals_name_the_field_and_create_nothing(world, v2, kwargs, field, message):
    runs = PipelineRun.objects.count()
    with pytest.raises(ValidationError) as caught:
        _start(world, **kwargs)
    assert message in " ".join(caught.value.message_dict[field])
    assert (PipelineRun.objects.count(), Evaluation.objects.count()) == (runs, 0)


def test_the_comparison_appears_once_both_sides_finished(world, v2, admin_client, settings):
    settings.EVALUATION_MIN_PROMPTS = 2  # the fixture's two prompts may carry a verdict here
    evaluation = _start(world, candidate=2, completions_per_prompt=3)
    assert services.evaluation_finish(evaluation=evaluation).result is None
    assert "comparison appears here" in admin_client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    # Both sides "ran": copy the fixture's judged completions in (baseline) and better ones (candidate).
    from labelling.models import Judgment

    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    for run, scores in ((evaluation.candidate_run, [5, 5, 4]), (evaluation.baseline_run, [1, 3, 5])):
        for prompt in PromptSet.objects.get(slug="keeper").prompts.all():
            group = record_services.group_for(run=run, prompt=prompt)
            for index, score in enumerate(scores):
                g = record_services.generation_record(
                    group=group, index=index, messages=[], producer=None, run=run, raw_text="word " * (index + 1)
                )
                record_services.judgment_record(
                    generation=g,
                    rubric=world["rubric"],
                    source=Judgment.Source.JUDGE,
                    scores={"voice": score},
                    run=run,
                    producer=judge,
                )
        PipelineRun.objects.filter(pk=run.pk).update(status="succeeded")
    evaluation.refresh_from_db()
    result = services.evaluation_finish(evaluation=evaluation).result
    assert (result["prompts"], result["wins"], result["losses"]) == (2, 2, 0)
    assert result["reward"]["delta"]["estimate"] == pytest.approx((14 - 9) / 3 / 4)
    assert set(result["criteria"]) == {"voice"}
    page = admin_client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert "<strong>2</strong> won" in page and 'class="win-rate"' in page
    models_page = admin_client.get("/models/").content.decode()
    assert f'href="/evaluations/{evaluation.pk}/"' in models_page
    # The lineage marks it: its win rate's interval lies above 0.5.
    assert 'class="verdict verdict-better"' in models_page and 'id="reward-by-version"' in models_page
    from labelling.versions.evaluation import selectors

    # Better, but v2 records no training data: nothing says its prompts were held out of it.
    assert "never on held-out prompts" in selectors.needs_confirmation(v2)
    GeneratorVersion.objects.create(number=3, parent=v2, status="ready")
    assert "has not been evaluated against its parent (v2)" in selectors.needs_confirmation(
        GeneratorVersion.objects.get(number=3)
    )


def test_the_evaluate_command_refuses_unknown_names(world, v2):
    with pytest.raises(CommandError, match="no prompt set 'nope'"):
        call_command("evaluate", "--candidate", "2", "--prompt-set", "nope", "--rubric", "voice")
    with pytest.raises(CommandError, match="baseline: the baseline must be another version"):
        call_command("evaluate", "--candidate", "2", "--baseline", "2", "--prompt-set", "keeper", "--rubric", "voice")


def test_completions_the_judge_could_not_score_are_counted_not_dropped_silently(world, v2, admin_client):
    from labelling.models import Judgment

    evaluation = _start(world, candidate=2, completions_per_prompt=2)
    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    prompts = list(PromptSet.objects.get(slug="keeper").prompts.order_by("pk"))
    for run in (evaluation.candidate_run, evaluation.baseline_run):
        for n, prompt in enumerate(prompts):
            group = record_services.group_for(run=run, prompt=prompt)
            for index in range(2):
                g = record_services.generation_record(
                    group=group, index=index, messages=[], producer=None, run=run, raw_text="an answer"
                )
                # The candidate's first prompt: the judge answered prose both times.
                if run == evaluation.candidate_run and n == 0:
                    record_services.judgment_record_failure(
                        generation=g,
                        rubric=world["rubric"],
                        run=run,
                        producer=judge,
                        raw_output="prose",
                        error="unparseable",
                    )
                    continue
                record_services.judgment_record(
                    generation=g,
                    rubric=world["rubric"],
                    source=Judgment.Source.JUDGE,
                    scores={"voice": 3},
                    run=run,
                    producer=judge,
                )
        PipelineRun.objects.filter(pk=run.pk).update(status="partial")
    evaluation.refresh_from_db()
    result = services.evaluation_finish(evaluation=evaluation).result
    assert result["prompts"] == 1 and result["ties"] == 1
    assert result["failures"] == {
        "unscored_completions": {"candidate": 2, "baseline": 0},
        "prompts_left_out": 1,
        "prompts_total": 2,
    }
    page = admin_client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="evaluation-failures"' in page and "1 of 2 prompts" in page


def test_the_evaluate_command_takes_versions_as_labels(world, v2, capsys):
    call_command("evaluate", "--candidate", "qwen3@2", "--prompt-set", "keeper", "--rubric", "voice")
    evaluation = Evaluation.objects.get()
    assert (evaluation.candidate.number, evaluation.baseline.number) == (2, 1)
    assert "evaluation #" in capsys.readouterr().out
    with pytest.raises(CommandError, match="expected a version number"):
        call_command("evaluate", "--candidate", "llama@2", "--prompt-set", "keeper", "--rubric", "voice")
    with pytest.raises(CommandError, match="there is no version 9 of dataset 'mira'"):
        call_command("evaluate", "--candidate", "2", "--dataset", "mira@9", "--rubric", "voice")


def test_the_same_idempotency_key_starts_one_evaluation(world, v2, client, admin_user, monkeypatch):
    from labelling.access import tokens

    headers = {
        "Authorization": f"Bearer {tokens.token_create(user=admin_user, name='t')[1]}",
        "Idempotency-Key": "eval-1",
    }
    body = {"candidate": 2, "prompt_set": "keeper", "rubric": "voice", "completions_per_prompt": 2}
    first = client.post("/api/evaluations", body, content_type="application/json", headers=headers)
    again = client.post("/api/evaluations", body, content_type="application/json", headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), first.content
    assert first.json()["id"] == again.json()["id"] and Evaluation.objects.count() == 1
    runs = PipelineRun.objects.count()
    # Two requests at once: the second passes the first look-up before the first commits, and
    # meets the runs' unique keys instead; it answers the evaluation the first one started.
    found = services.evaluation_for_key
    monkeypatch.setattr(
        services,
        "evaluation_for_key",
        lambda key, calls=[], **kw: calls.append(key) or (found(key, **kw) if len(calls) > 1 else None),
    )
    again = _start(world, candidate=2, completions_per_prompt=2, idempotency_key="eval-1", user=admin_user)
    assert again.pk == first.json()["id"] and again.started is False
    assert (Evaluation.objects.count(), PipelineRun.objects.count()) == (1, runs)
    too_long = client.post(
        "/api/evaluations", body, content_type="application/json", headers={**headers, "Idempotency-Key": "k" * 101}
    )
    assert too_long.status_code == 422 and "idempotency_key" in too_long.json()["errors"]
    other = client.post(
        "/api/evaluations", {**body, "completions_per_prompt": 3}, content_type="application/json", headers=headers
    )
    assert other.status_code == 409 and "another request" in other.json()["detail"]


def test_the_judge_is_fingerprinted_and_never_the_candidate_itself(world, v2, settings):
    from shaping_core.weights import SHIPPED_ONNX_DIR

    settings.JUDGE_MODEL_DIR = settings.BASE_DIR / SHIPPED_ONNX_DIR  # the judge runs version 1's weights
    evaluation = _start(world, candidate=2)
    judge = evaluation.judge
    assert judge["judge_weights_sha256"] == GeneratorVersion.objects.get(number=1).weights_sha256 != ""
    assert len(judge["judge_prompt_sha256"]) == 64
    world["rubric"].criteria.update(description="Sounds like Mira, reworded")
    assert _start(world, candidate=2).judge["judge_prompt_sha256"] != judge["judge_prompt_sha256"]
    with pytest.raises(ValidationError, match="it would score itself"):
        _start(world, candidate=1, baseline=2)


def test_a_rubric_of_rules_only_asks_no_judge_so_none_is_fingerprinted(world, v2):
    from labelling.models import Criterion

    Criterion.objects.filter(rubric=world["rubric"]).update(rule={"kind": "regex", "pattern": "Mira"})
    judge = _start(world, candidate=2).judge
    assert (judge["judge_prompt_sha256"], judge["judge_weights_sha256"]) == ("", "")


def test_a_judge_that_is_the_baseline_is_recorded_and_the_rules_verdict_stands_beside_its_own(
    world, v2, settings, admin_client
):
    """The demo judges with the base model's weights: in v2 against v1 the judge is the baseline,
    which may prefer its own answers. Here it does (judge criteria: baseline better), while the
    rule criteria, which no model scores, say the candidate is: both verdicts are shown."""
    from labelling.models import Criterion
    from shaping_core.weights import SHIPPED_ONNX_DIR
    from tests.evaluation.fixtures import ran

    settings.JUDGE_MODEL_DIR = settings.BASE_DIR / SHIPPED_ONNX_DIR  # version 1's weights
    Criterion.objects.create(
        rubric=world["rubric"],
        key="signed",
        description="signs",
        scale_min=0,
        scale_max=1,
        weight=3,
        rule={"kind": "regex", "pattern": "^cand"},
    )
    evaluation = _start(world, candidate=2, completions_per_prompt=2)
    assert evaluation.judge["shares_weights_with"] == "baseline v1"
    ran(evaluation, world["rubric"], candidate=[1, 1], baseline=[5, 5])
    evaluation.refresh_from_db()
    result = services.evaluation_finish(evaluation=evaluation).result
    assert result["by_source"]["judge"]["losses"] == result["prompts"] == 2
    assert result["by_source"]["rules"]["wins"] == 2 and result["wins"] == 2  # the rules outweigh the judge here
    page = admin_client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="judge-self-preference"' in page and "runs the weights of the baseline v1" in page
    assert "Rule criteria alone" in page and "Judge criteria alone" in page


def test_a_judge_with_weights_of_its_own_shares_none(world, v2, settings, tmp_path):
    import shutil

    from shaping_core.weights import SHIPPED_ONNX_DIR

    other = tmp_path / "judge"
    shutil.copytree(settings.BASE_DIR / SHIPPED_ONNX_DIR, other, ignore=shutil.ignore_patterns("hf"))
    with (other / "model.onnx").open("ab") as f:
        f.write(b"\0")  # other weights, as far as the fingerprint goes
    settings.JUDGE_MODEL_DIR = other
    assert _start(world, candidate=2).judge["shares_weights_with"] == ""
