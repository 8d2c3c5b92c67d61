"""Reviewers per group: a generate run asks that each of its groups go to N reviewers (the API,
the new-run page and `start_run --review-overlap` take it, one check for all), so agreement
between reviewers can be measured; outside 1..10 it is refused and nothing is made."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from labelling.access import tokens
from labelling.access.roles import REVIEWER, ensure_roles
from labelling.models import Character, Group, PipelineRun, PromptSet
from labelling.records import services as record_services
from labelling.review import services as review_services
from labelling.runs import services as run_services
from tests.api.test_api import Api


@pytest.fixture
def aria(demo):
    return {"character": Character.objects.get(slug="aria"), "prompt_set": PromptSet.objects.get(slug="aria-demo")}


@pytest.fixture
def second_reviewer(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="sam", password="a-long-private-password-7")
    user.groups.add(ensure_roles()[REVIEWER])
    return user


def test_a_run_asking_two_reviewers_per_group_sends_each_group_to_two(aria, reviewer, second_reviewer):
    run, _ = run_services.run_start(
        kind="generate",
        character=aria["character"],
        prompt_set=aria["prompt_set"],
        group_size=2,
        params={"review_overlap": 2},
        enqueue=False,
    )
    group = record_services.group_for(run=run, prompt=aria["prompt_set"].prompts.first())
    assert group.overlap_target == 2
    Group.objects.exclude(pk=group.pk).update(ready=False)  # only this group is open
    Group.objects.filter(pk=group.pk).update(ready=True)
    first = review_services.assignment_claim_next(reviewer=reviewer)
    second = review_services.assignment_claim_next(reviewer=second_reviewer)
    assert first.group_id == second.group_id == group.pk  # one group, two reviewers


@pytest.mark.parametrize("overlap", [0, 11, "2", 2.0, True])
def test_reviewers_per_group_outside_one_to_ten_is_refused_and_makes_no_run(aria, overlap):
    before = PipelineRun.objects.count()
    with pytest.raises(ValidationError, match="review_overlap"):
        run_services.run_start(
            kind="generate",
            character=aria["character"],
            prompt_set=aria["prompt_set"],
            params={"review_overlap": overlap},
            enqueue=False,
        )
    assert PipelineRun.objects.count() == before


def test_the_api_page_and_command_take_reviewers_per_group(client, admin_user, admin_client, aria):
    api = Api(client, tokens.token_create(user=admin_user, name="t")[1])
    body = {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "review_overlap": 3}
    made = api.post("/runs", body)
    assert made.status_code == 201 and PipelineRun.objects.get(pk=made.json()["id"]).params["review_overlap"] == 3
    refused = api.post("/runs", {**body, "review_overlap": 11})
    assert refused.status_code == 422 and "review_overlap" in refused.json()["errors"]

    page = admin_client.post(
        "/runs/new",
        {
            "kind": "generate",
            "character": aria["character"].pk,
            "prompt_set": aria["prompt_set"].pk,
            "group_size": "2",
            "review_overlap": "2",
            "max_tokens": "16",
            "threshold": "0.5",
            "max_rounds": "1",
        },
    )
    assert page.status_code == 302
    assert PipelineRun.objects.order_by("-pk").first().params["review_overlap"] == 2

    call_command(
        "start_run",
        "--kind",
        "generate",
        "--character",
        "aria",
        "--prompt-set",
        "aria-demo",
        "--review-overlap",
        "4",
        stdout=io.StringIO(),
    )
    assert PipelineRun.objects.order_by("-pk").first().params["review_overlap"] == 4
