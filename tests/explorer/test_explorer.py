"""The explorer: a run's completions with judge and human scores, reward and advantage;
filtered and sorted, paged by key; each row linking to its group; admins only."""

import re

import pytest
from django.urls import reverse

from labelling.explorer import selectors
from labelling.models import Generation, Judgment, PipelineRun
from labelling.records import services as record_services


def rows(client, run, **params) -> list[str]:
    """The page's completion texts, in order."""
    response = client.get(reverse("explorer_run", args=[run.pk]), params)
    assert response.status_code == 200
    return re.findall(r'<td class="cell-text">([^<]*?)(?: <span| ?</td>)', response.content.decode())[1::2]


def human(world, key, score, reviewer=None):
    return record_services.judgment_record(
        generation=world["made"][key],
        rubric=world["rubric"],
        source=Judgment.Source.HUMAN,
        scores={"voice": score},
        reviewer=reviewer or world["reviewer"],
    )


def test_it_lists_each_completion_with_scores_reward_and_advantage_linking_to_its_group(admin_client, world):
    run, made = world["run"], world["made"]
    html = admin_client.get(reverse("explorer_run", args=[run.pk])).content.decode()
    row = html[html.index(f'id="row-{made[("a", 2)].pk}"') :]
    row = row[: row.index("</tr>")]
    assert f'href="{reverse("explorer_group", args=[made[("a", 2)].group_id])}"' in row
    assert "What do you see?" in row and "a-2" in row
    assert "<td>1.00</td>" in row and "<td>1.000</td>" in row  # the judge's score, the reward
    assert "<td>1.22</td>" in row  # (1 - 0.5) / std(0, 0.5, 1)
    assert rows(admin_client, run) == ["a-0", "a-1", "a-2", "b-0", "b-1"]


def test_it_sorts_by_reward_both_ways(admin_client, world):
    run = world["run"]
    assert rows(admin_client, run, sort="reward")[0] == "a-2"
    assert rows(admin_client, run, sort="-reward")[0] == "a-0"


def test_a_human_score_outranks_the_judge_and_disagreement_sorts_largest_first(admin_client, world):
    run = world["run"]
    human(world, ("a", 0), 5)  # the judge gave 1: a gap of 1.0
    human(world, ("b", 0), 3)  # the judge gave 4: a gap of 0.25
    assert rows(admin_client, run, sort="reward")[0] in ("a-0", "a-2")  # both 1.0 now
    assert rows(admin_client, run, sort="disagreement") == ["a-0", "b-0"]  # only rows with both scores
    assert rows(admin_client, run, human="yes") == ["a-0", "b-0"]
    assert rows(admin_client, run, human="no") == ["a-1", "a-2", "b-1"]


def test_it_filters_by_reviewer(admin_client, world, admin_user):
    run = world["run"]
    human(world, ("a", 1), 2)
    human(world, ("b", 1), 2, reviewer=admin_user)
    html = admin_client.get(reverse("explorer_run", args=[run.pk])).content.decode()
    assert f'<option value="{world["reviewer"].pk}">rita</option>' in html
    assert rows(admin_client, run, reviewer=world["reviewer"].pk) == ["a-1"]
    assert rows(admin_client, run, reviewer=admin_user.pk) == ["b-1"]


def test_it_filters_failures(admin_client, world):
    run, made = world["run"], world["made"]
    group = made[("b", 0)].group
    failed = record_services.generation_record(
        group=group, index=2, messages=made[("b", 0)].messages, producer=None, run=run, raw_text="b-2"
    )
    record_services.judgment_record_failure(
        generation=failed,
        rubric=world["rubric"],
        producer=record_services.producer_get_or_create(backend="fixture", model_name="judge"),
        raw_output="not json",
        error="no scores",
        run=run,
    )
    assert rows(admin_client, run, failure="judge") == ["b-2"]
    assert rows(admin_client, run, failure="unscored") == ["b-2"]
    html = admin_client.get(reverse("explorer_run", args=[run.pk]), {"failure": "judge"}).content.decode()
    assert '<span class="error">failed</span>' in html


def test_pages_follow_by_key_without_repeating_or_skipping_a_row(admin_client, world, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    run = world["run"]
    for sort in ("", "reward", "-reward"):
        seen, params = [], {"sort": sort}
        for _ in range(5):
            response = admin_client.get(reverse("explorer_run", args=[run.pk]), params)
            html = response.content.decode()
            seen += re.findall(r'id="row-(\d+)"', html)
            found = re.search(r'rel="next" href="\?([^"]+)"', html)
            if not found:
                break
            params = dict(pair.split("=", 1) for pair in found.group(1).replace("&amp;", "&").split("&"))
            params = {k: v.replace("%3A", ":") for k, v in params.items()}
        assert sorted(seen) == sorted(str(g.pk) for g in world["made"].values()), sort
        assert len(seen) == len(set(seen)) == 5


def test_a_bad_query_string_is_ignored_not_an_error(admin_client, world):
    params = {"sort": "nope", "failure": "x", "reviewer": "١", "after": "nan:abc", "human": "maybe"}
    assert rows(admin_client, world["run"], **params) == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert rows(admin_client, world["run"], sort="reward", after="nan:3")[0] == "a-2"


def test_model_text_is_escaped(admin_client, world):
    Generation.objects.filter(pk=world["made"][("a", 0)].pk).update(text='<img src=x onerror="alert(1)">')
    html = admin_client.get(reverse("explorer_run", args=[world["run"].pk])).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_a_page_reads_a_fixed_number_of_queries(admin_client, world, django_assert_max_num_queries):
    human(world, ("a", 0), 5)
    with django_assert_max_num_queries(10):
        admin_client.get(reverse("explorer_run", args=[world["run"].pk]), {"sort": "disagreement"})


def test_a_judge_run_lists_the_completions_it_judged(admin_client, world):
    run = PipelineRun.objects.create(kind="judge", source_run=world["run"], rubric=world["rubric"])
    assert rows(admin_client, run) == ["a-0", "a-1", "a-2", "b-0", "b-1"]


def test_the_group_page_shows_every_completion_with_its_scores(admin_client, world):
    group = world["made"][("a", 0)].group
    human(world, ("a", 0), 4)
    html = admin_client.get(reverse("explorer_group", args=[group.pk])).content.decode()
    assert "What do you see?" in html and html.count('class="completion-row"') == 3
    assert "rita: voice 4" in html and "<dt>Judge</dt><dd><strong>0.00</strong>" in html


@pytest.mark.parametrize("name", ["explorer_run", "explorer_group"])
def test_reviewers_cannot_explore(reviewer_client, world, name):
    target = world["run"].pk if name == "explorer_run" else world["made"][("a", 0)].group_id
    assert reviewer_client.get(reverse(name, args=[target])).status_code == 403


def test_the_run_page_links_to_its_rows(admin_client, world):
    html = admin_client.get(reverse("run_detail", args=[world["run"].pk])).content.decode()
    assert f'href="{reverse("explorer_run", args=[world["run"].pk])}"' in html
