"""Shared fixtures: users per role, signed-in clients, the demo content."""

import copy
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection, transaction

from labelling.access.roles import ADMIN, REVIEWER, ensure_roles
from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from labelling.models import Judgment
from labelling.records import services as record_services
from labelling.runs import services as run_services
from labelling.versions.generators import services as generator_services

pytest_plugins = ["tests.triton_fixture", "tests.openai_fixture"]

PASSWORD = "correct-horse-battery"

# Markers follow from the fixtures a test uses (item.fixturenames holds every fixture it
# needs, directly or through other fixtures), so a new test is marked the moment it asks
# for one. `make test-fast` runs what is left: -m "not triton and not browser and not slow".
MARKER_FIXTURES = {
    # tests/triton_fixture.py: the real tritonserver (tests/browser's live_app and
    # tests/pipelines' consumer are built on it). A test that starts its own server with
    # start_triton() carries @pytest.mark.triton by hand; start_triton() checks that it does.
    "triton": {"triton_server", "triton_url"},
    # tests/browser/conftest.py: Debian's chromium and the app as `manage.py serve` runs it.
    "browser": {"browser", "live_app", "sign_in"},
    # tests/pipelines/conftest.py: a real huey consumer subprocess, waited on while it works;
    # tests/openai_fixture.py: a real `transformers serve` (a backend case asking for it at run
    # time carries the marker itself, as the triton case does).
    "slow": {"consumer", "transformers_serve"},
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        wanted = {marker for marker, fixtures in MARKER_FIXTURES.items() if used & fixtures}
        # Schemathesis fuzzing (tests/api/test_fuzz.py): dozens of generated requests for each
        # operation of the API, a minute in all.
        if type(item).__module__.startswith("schemathesis."):
            wanted.add("slow")
        for marker in sorted(wanted):
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test databases. Before it drops them, the web threads of the ASGI
    application that tests sent requests to in process (shaping_web.asgi) close the
    connections they keep for CONN_MAX_AGE (shaping_web/handlers.py): PostgreSQL refuses to
    drop a database another connection is using ("being accessed by other users")."""
    yield
    if (asgi := sys.modules.get("shaping_web.asgi")) is not None:  # no test imported it: no thread
        asgi.django_asgi_app.leases.close_connections()


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


# The demo, with hand-written groups to review instead of the demo model's answers: cases the
# tests rely on (think tags, markup in model text, a clear best answer, equal judge scores).
HAND_WRITTEN = Path(__file__).resolve().parent / "data" / "hand-written-groups.jsonl"

# seed_demo validates and imports two files (about half a second), and a hundred tests use
# the demo. The rows it adds are kept the first time and written back exactly as they were
# (raw inserts: timestamps included) when a test starts from the same database (the same
# rows in every table): the rows seed_demo would have written. Otherwise it runs again.
_demo_rows: dict[tuple, list[tuple[type, list]]] = {}


def _tables() -> list[type]:
    """Every table, many-to-many ones included; not sessions (a signed-in client's random key)."""
    return [
        m
        for m in apps.get_models(include_auto_created=True)
        if m._meta.managed and not m._meta.proxy and m._meta.app_label != "sessions"
    ]


def _db_state() -> tuple:
    """The ids in every table, and the usernames (seed_demo leaves a user it finds alone)."""
    ids = tuple((m, tuple(m._default_manager.order_by("pk").values_list("pk", flat=True))) for m in _tables())
    usernames = tuple(get_user_model().objects.order_by("pk").values_list("username", flat=True))
    return (*ids, usernames)


@pytest.fixture
def demo(db):
    before = _db_state()
    if before in _demo_rows:
        with transaction.atomic():
            for model, rows in _demo_rows[before]:
                for i in range(0, len(rows), 100):
                    model._base_manager._insert(
                        copy.deepcopy(rows[i : i + 100]), fields=model._meta.local_concrete_fields, raw=True
                    )
            with connection.cursor() as cursor:  # PostgreSQL: new ids go on after the loaded ones
                for sql in connection.ops.sequence_reset_sql(no_style(), [m for m, _ in _demo_rows[before]]):
                    cursor.execute(sql)
        return
    call_command("seed_demo", completions=HAND_WRITTEN, verbosity=0)
    _demo_rows[before] = [
        (model, rows)
        for model, pks in before[:-1]
        if (rows := list(model._default_manager.exclude(pk__in=pks).order_by("pk")))
    ]


@pytest.fixture(autouse=True)
def _shipped_generator_version(request):
    """A transactional test's flush empties every table, migration 0010's version 1 of qwen3
    included; the next transactional test gets it back, as the migration made it (runs that
    generate need a current version)."""
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" not in request.fixturenames and not (marker and marker.kwargs.get("transaction")):
        return
    request.getfixturevalue("transactional_db")
    generator_services.generator_version_shipped_restore()


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
    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    made = {}
    for prompt, scores in ((prompts[0], [1, 3, 5]), (prompts[1], [4, 4])):
        group = record_services.group_for(run=run, prompt=prompt)
        messages = catalogue_selectors.prompt_messages_for(character, prompt)
        for index, score in enumerate(scores):
            g = record_services.generation_record(
                group=group,
                index=index,
                messages=messages,
                producer=None,
                run=run,
                raw_text=f"{prompt.external_id}-{index}",
            )
            record_services.judgment_record(
                generation=g,
                rubric=rubric,
                source=Judgment.Source.JUDGE,
                scores={"voice": score},
                run=run,
                producer=judge,
            )
            made[(prompt.external_id, index)] = g
    return {"rubric": rubric, "run": run, "made": made, "reviewer": reviewer}


@pytest.fixture(autouse=True)
def _empty_cache():
    """The review queue's shared totals are cached for seconds: each test starts without them."""
    from django.core.cache import cache

    cache.clear()


def _clock_measured() -> None:
    """The database clock's offset measured afresh (labelling/clock.py measures it with one query
    every OFFSET_KEPT_S): a block whose queries are counted does not count that one by chance."""
    from labelling import clock

    clock._measured.clear()
    clock.now()


@pytest.fixture
def django_assert_max_num_queries(django_assert_max_num_queries, db):
    _clock_measured()
    return django_assert_max_num_queries


@pytest.fixture
def django_assert_num_queries(django_assert_num_queries, db):
    _clock_measured()
    return django_assert_num_queries
