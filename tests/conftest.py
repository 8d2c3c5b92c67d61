"""Shared fixtures: users per role, signed-in clients, the demo content."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from labelling.access.roles import ADMIN, REVIEWER, ensure_roles
from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from labelling.models import Judgment
from labelling.runs import services as run_services

pytest_plugins = ["tests.triton_fixture"]

PASSWORD = "correct-horse-battery"


def _make_user(username: str, role: str | None):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=role == ADMIN)
    if role:
        user.groups.add(ensure_roles()[role])
    return user


@pytest.fixture
def admin_user(db):
    return _make_user("ada", ADMIN)


@pytest.fixture
def reviewer(db):
    return _make_user("rita", REVIEWER)


@pytest.fixture
def outsider(db):
    """Signed in, but in no role."""
    return _make_user("otto", None)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests and costs seconds per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def world(db, reviewer):
    """One group of three completions judged 1/3/5 (one criterion, 1..5) and one of two tied."""
    character = catalogue_services.character_create(
        data=CharacterIn(slug="mira", name="Mira", persona="Mira keeps a lighthouse.")
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="voice",
            name="Voice",
            criteria=[CriterionIn(key="voice", description="In voice", scale_min=1, scale_max=5)],
        )
    )
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="keeper", name="Keeper"))
    prompts = catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[
            PromptIn(id="a", messages=[{"role": "user", "content": "What do you see?"}]),
            PromptIn(id="b", messages=[{"role": "user", "content": "Any ships?"}]),
        ],
    )
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, group_size=3, enqueue=False
    )
    judge = run_services.model_version_get_or_create(backend="fixture", model_name="judge")
    made = {}
    for prompt, scores in ((prompts[0], [1, 3, 5]), (prompts[1], [4, 4])):
        group = run_services.group_for(run=run, prompt=prompt)
        messages = catalogue_selectors.prompt_messages_for(character, prompt)
        for index, score in enumerate(scores):
            g = run_services.generation_record(
                group=group,
                index=index,
                messages=messages,
                model_version=None,
                run=run,
                raw_text=f"{prompt.external_id}-{index}",
            )
            run_services.judgment_record(
                generation=g,
                rubric=rubric,
                source=Judgment.Source.JUDGE,
                scores={"voice": score},
                run=run,
                model_version=judge,
            )
            made[(prompt.external_id, index)] = g
    return {"rubric": rubric, "run": run, "made": made, "reviewer": reviewer}


@pytest.fixture(autouse=True)
def _empty_cache():
    """The review queue's shared totals are cached for seconds: each test starts without them."""
    from django.core.cache import cache

    cache.clear()
