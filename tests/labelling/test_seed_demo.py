"""The demo gives a new user real content at once, and seeding twice changes nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from labelling.models import Character, CriterionScore, Generation, Group, Judgment, Prompt, Rubric

MODELS = (Character, Rubric, Prompt, Group, Generation, Judgment)


@pytest.fixture
def seeded(db):
    call_command("seed_demo", verbosity=0)


def test_the_demo_has_aria_a_rubric_prompts_and_the_demo_models_answers_to_review(seeded):
    assert Character.objects.get(slug="aria").name == "Aria"
    rubric = Rubric.objects.get(slug="aria-voice")
    criteria = dict(rubric.criteria.values_list("key", "rule__kind"))
    assert criteria == {
        "in-character": None,
        "helpfulness": None,
        "concision": "length",
        "no-loops": "repetition",
        "signed": "regex",
    }
    assert Prompt.objects.filter(prompt_set__slug="aria-demo").count() == 6
    assert Prompt.objects.filter(prompt_set__slug="aria-everyday").count() >= 40
    assert Group.objects.count() == 5 and Generation.objects.count() == 20
    # Real answers, made by the demo model, each judged by it on the judge criteria and by the
    # rules on the others.
    assert set(Generation.objects.values_list("producer__model_name", flat=True)) == {
        "SmolLM2-135M-Instruct (demo model, fp32)"
    }
    assert all(len(text.split()) >= 3 for text in Generation.objects.values_list("text", flat=True))
    assert Judgment.objects.filter(source="judge", status="ok").count() == 20
    ruled = CriterionScore.objects.filter(criterion__rule__isnull=False, judgment__source="judge")
    assert ruled.count() == 60
    assert set(get_user_model().objects.values_list("username", flat=True)) == {"admin", "reviewer", "reviewer2"}


def test_seeding_twice_changes_nothing(seeded):
    before = [m.objects.count() for m in MODELS]
    call_command("seed_demo", verbosity=0)
    assert [m.objects.count() for m in MODELS] == before


def test_the_demo_users_can_sign_in(client, seeded):
    assert client.login(username="reviewer", password="shaping-demo")
