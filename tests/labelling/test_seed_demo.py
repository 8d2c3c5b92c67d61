"""The demo gives a new user real content at once, and seeding twice changes nothing."""

from django.contrib.auth import get_user_model
from django.core.management import call_command

from labelling.models import Character, Generation, Group, Judgment, Prompt, Rubric


def test_the_demo_has_aria_a_rubric_prompts_and_groups_to_review(demo):
    assert Character.objects.get(slug="aria").name == "Aria"
    rubric = Rubric.objects.get(slug="aria-voice")
    assert sorted(rubric.criteria.values_list("key", flat=True)) == [
        "concision",
        "helpfulness",
        "honesty",
        "in-character",
    ]
    assert Prompt.objects.filter(prompt_set__slug="aria-demo").count() == 6
    assert Group.objects.count() == 5 and Generation.objects.count() == 20
    assert Judgment.objects.filter(source="judge").count() == 16
    assert set(get_user_model().objects.values_list("username", flat=True)) == {
        "admin",
        "reviewer",
        "reviewer2",
    }


def test_seeding_twice_changes_nothing(demo):
    before = [m.objects.count() for m in (Character, Rubric, Prompt, Group, Generation, Judgment)]
    call_command("seed_demo", verbosity=0)
    assert [m.objects.count() for m in (Character, Rubric, Prompt, Group, Generation, Judgment)] == before


def test_the_demo_users_can_sign_in(client, demo):
    assert client.login(username="reviewer", password="shaping-demo")
