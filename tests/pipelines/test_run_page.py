"""The run page as an admin reads it: scores per completion, groups headed by their prompt,
settings as a table under the status, actions only where they apply, the stage and clock of a
run going on, and the live stream's targets on the page."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import PromptIn
from labelling.models import Judgment, PipelineRun
from labelling.records import services as record_services


def page(client, run) -> str:
    response = client.get(reverse("run_detail", args=[run.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_each_completion_shows_the_judges_score_and_the_reviewers(admin_client, world):
    run, made = world["run"], world["made"]
    record_services.judgment_record(
        generation=made[("a", 0)],
        rubric=world["rubric"],
        source=Judgment.Source.HUMAN,
        scores={"voice": 4},
        reviewer=world["reviewer"],
    )
    html = page(admin_client, run)
    card = html[html.index(f'id="live-group-{made[("a", 0)].group_id}"') :]
    assert "<dt>Judge</dt><dd><strong>0.00</strong>" in card and "voice 1" in card  # slot 0: judged 1 of 1..5
    assert "<dt>Judge</dt><dd><strong>1.00</strong>" in card and "voice 5" in card  # slot 2: judged 5
    assert "<dt>Human</dt><dd><strong>0.75</strong>" in card and "rita: voice 4" in card
    # The reward follows the reviewer where one scored: 0.75, not the judge's 0.00.
    assert "<dt>Reward</dt><dd>0.750</dd>" in card


def test_groups_are_headed_by_their_prompt_escaped_and_shortened(admin_client, world):
    run = world["run"]
    long = "<b>Lighthouse</b> " + "the lamp turns and turns " * 20
    prompt = catalogue_services.prompts_add(
        prompt_set=run.prompt_set, prompts=[PromptIn(id="long", messages=[{"role": "user", "content": long}])]
    )[0]
    group = record_services.group_for(run=run, prompt=prompt)
    record_services.generation_record(
        group=group,
        index=0,
        messages=catalogue_selectors.prompt_messages_for(run.character, prompt),
        producer=None,
        run=run,
        raw_text="<script>alert(1)</script>",
    )
    html = page(admin_client, run)
    assert '<h3 class="prompt-heading">What do you see?</h3>' in html
    heading = html[html.index(f'id="live-group-{group.pk}"') :]
    heading = heading[heading.index('<h3 class="prompt-heading">') : heading.index("</h3>")]
    assert heading.startswith('<h3 class="prompt-heading">&lt;b&gt;Lighthouse&lt;/b&gt;') and heading.endswith("…")
    assert "<summary>Whole prompt</summary>" in html and "the lamp turns and turns the lamp" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_settings_are_a_table_under_the_status_not_a_raw_dict(admin_client, world):
    run = world["run"]
    run.params = {"sampling": {"max_tokens": 64}, "revise": False, "odd": [[1, 2], [3]], "request_sha256": "ab" * 32}
    run.save(update_fields=["params"])
    html = page(admin_client, run)
    assert html.index(f'id="run-{run.pk}"') < html.index("<h2>Settings</h2>")
    assert '<th scope="row">max tokens</th><td>64</td>' in html
    assert '<th scope="row">revise weak completions</th><td>no</td>' in html
    assert "voice v1: the judge scores every completion" in html
    assert "<td><code>voice</code></td><td>1–5</td>" in html  # the rubric's criteria, one row each
    assert "{'sampling'" not in html and "<summary>Every other setting, as stored</summary>" in html
    assert "request sha256</th>" not in html  # bookkeeping: with the rest, not a setting


def test_a_finished_run_offers_neither_cancel_nor_resume(admin_client, world):
    run = world["run"]
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.SUCCEEDED, finished_at=timezone.now())
    html = page(admin_client, run)
    assert reverse("run_cancel", args=[run.pk]) not in html and reverse("run_resume", args=[run.pk]) not in html


def test_a_queued_run_offers_cancel_and_a_failed_one_resume(admin_client, world):
    run = world["run"]
    html = page(admin_client, run)
    assert reverse("run_cancel", args=[run.pk]) in html and reverse("run_resume", args=[run.pk]) not in html
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.FAILED, finished_at=timezone.now())
    html = page(admin_client, run)
    assert reverse("run_cancel", args=[run.pk]) not in html and reverse("run_resume", args=[run.pk]) in html


def test_cancelling_a_finished_run_says_so_and_changes_nothing(admin_client, world):
    run = world["run"]
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.SUCCEEDED, finished_at=timezone.now())
    response = admin_client.post(reverse("run_cancel", args=[run.pk]), follow=True)
    assert f"Run #{run.pk} has already finished (Succeeded): nothing to cancel." in response.content.decode()
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED and not run.cancel_requested


def test_cancelling_a_queued_run_stops_it(admin_client, world, django_capture_on_commit_callbacks):
    run = world["run"]
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(reverse("run_cancel", args=[run.pk]), follow=True)
    assert f"Run #{run.pk} cancelled." in response.content.decode()
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.CANCELLED


def test_a_loading_train_run_shows_its_stage_its_clock_and_the_rubric_that_applies(admin_client, db):
    run = PipelineRun.objects.create(
        kind=PipelineRun.Kind.TRAIN,
        status=PipelineRun.Status.RUNNING,
        params={"method": "dpo", "dataset": "aria@1", "training": {"learning_rate": 5e-6, "beta": 0.1}},
        total_items=8,
        started_at=timezone.now() - timedelta(seconds=83),
        heartbeat_at=timezone.now(),
    )
    html = page(admin_client, run)
    row = html[html.index(f'<tr id="run-{run.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "0/8" in row and "loading the trainer" in row  # in the row: pushed live with it
    assert "running for <time" in row and ">1\xa0minute</time>" in row and "data-elapsed-from=" in row
    assert "no reward rubric: dpo learns from the dataset&#x27;s rows" in html and "Rubric: —" not in html
    assert '<th scope="row">training.learning rate</th>' in html and "Explore its rows" not in html


def test_a_grpo_train_run_names_its_reward_rubric(admin_client, world):
    spec = world["rubric"].as_spec()
    run = PipelineRun.objects.create(
        kind=PipelineRun.Kind.TRAIN, params={"method": "grpo", "rubric_spec": spec}, total_items=4
    )
    html = page(admin_client, run)
    assert "reward rubric voice v1" in html and "<td><code>voice</code></td>" in html
    assert "waiting for a training worker" in html


def test_a_group_being_generated_has_a_stream_target_per_open_slot(admin_client, world):
    run, made = world["run"], world["made"]
    group_b = made[("b", 0)].group  # two of three slots are in: slot 2 is still streaming
    html = page(admin_client, run)
    assert f'id="stream-{group_b.pk}-2"' in html
    assert f'id="stream-{group_b.pk}-0"' not in html  # a saved completion streams nothing more
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.PARTIAL, finished_at=timezone.now())
    assert "stream-" not in page(admin_client, run)  # a finished run streams nothing


def test_the_groups_come_again_when_the_live_socket_opens(admin_client, world):
    run = world["run"]
    html = page(admin_client, run)
    assert 'hx-trigger="htmx:wsOpen from:body"' in html
    partial = admin_client.get(reverse("run_detail", args=[run.pk]), headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert body.lstrip().startswith('<section id="live-groups"') and "<h2>Settings</h2>" not in body
    assert f'id="stream-{world["made"][("b", 0)].group_id}-2"' in body


def test_the_run_page_reads_a_fixed_number_of_queries_whatever_its_groups(
    admin_client, world, django_assert_max_num_queries
):
    run = world["run"]
    prompts = catalogue_services.prompts_add(
        prompt_set=run.prompt_set,
        prompts=[PromptIn(id=f"more{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(12)],
    )
    for prompt in prompts:
        group = record_services.group_for(run=run, prompt=prompt)
        messages = catalogue_selectors.prompt_messages_for(run.character, prompt)
        for index in range(3):
            g = record_services.generation_record(
                group=group, index=index, messages=messages, producer=None, run=run, raw_text="x"
            )
            record_services.judgment_record(
                generation=g,
                rubric=world["rubric"],
                source=Judgment.Source.JUDGE,
                scores={"voice": 3},
                run=run,
                producer=record_services.producer_get_or_create(backend="fixture", model_name="judge"),
            )
    with django_assert_max_num_queries(12):
        html = page(admin_client, run)
    assert html.count('class="completion-row"') == 5 + 12 * 3  # group b holds two


@pytest.mark.parametrize("kind", ["judge", "revise"])
def test_a_judge_or_revise_run_shows_its_source_runs_groups(admin_client, world, kind):
    source = world["run"]
    run = PipelineRun.objects.create(kind=kind, source_run=source, rubric=world["rubric"])
    html = page(admin_client, run)
    assert "What do you see?" in html and f'of run <a href="{reverse("run_detail", args=[source.pk])}">' in html


def parts_in_the_api(client, admin_user, run) -> list[dict]:
    from labelling.access import tokens

    token = tokens.token_create(user=admin_user, name=f"parts-{run.pk}")[1]
    response = client.get(f"/api/runs/{run.pk}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    return response.json()["parts"]


def test_a_run_in_parts_shows_each_part_as_the_api_returns_it(admin_client, admin_user, world, settings):
    from labelling import clock
    from labelling.models import RunShard

    run = world["run"]
    assert parts_in_the_api(admin_client, admin_user, run) == []  # one piece: no parts
    assert "<h2>Parts" not in page(admin_client, run)
    run.params = {**run.params, "shards": 2}
    run.save(update_fields=["params"])
    now = clock.now()
    RunShard.objects.create(run=run, index=0, status="done", execution=1, heartbeat_at=now, done_items=1)
    RunShard.objects.create(
        run=run,
        index=1,
        status="running",
        execution=2,
        heartbeat_at=now - timedelta(seconds=settings.RUN_STALE_AFTER_S + 5),
        done_items=0,
        failed_items=1,
    )
    parts = parts_in_the_api(admin_client, admin_user, run)
    assert [(p["index"], p["status"], p["claims"], p["stale"]) for p in parts] == [
        (0, "done", 1, False),
        (1, "running", 2, True),
    ]
    html = page(admin_client, run)
    assert "the run in 2 parts" in html
    first, second = html.split('id="part-0"')[1].split("</tr>")[0], html.split('id="part-1"')[1].split("</tr>")[0]
    assert "<td>done</td>" in first and "<td>1</td><td>0</td><td>1</td>" in first and "no heartbeat" not in first
    assert "no heartbeat: to be taken over" in second and "<td>0</td><td>1</td><td>2</td>" in second
    assert '<th scope="row">parts (one per consumer)</th><td>2</td>' in html
