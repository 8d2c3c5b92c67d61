"""Health that tells the truth: a database that takes no writes is "down" in /readyz, while
a read through the API still works (a token's use is stamped at most once a minute, best
effort); and the probes answer over plain HTTP in production instead of redirecting."""

import json

import pytest
from django.db import connection

from labelling.access import tokens
from labelling.models import ApiToken
from tests.labelling.test_fail_closed import SECRET, manage

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit: each statement its own transaction


@pytest.fixture
def read_only(transactional_db):
    """This connection refuses every write from now on, as a read-only file or replica does."""
    on, off = (
        ("PRAGMA query_only = ON", "PRAGMA query_only = OFF")
        if connection.vendor == "sqlite"
        else ("SET default_transaction_read_only = on", "SET default_transaction_read_only = off")
    )
    with connection.cursor() as cursor:
        cursor.execute(on)
    yield
    with connection.cursor() as cursor:
        cursor.execute(off)


def test_readyz_says_the_database_is_down_when_it_takes_no_writes(client, read_only):
    body = client.get("/readyz").json()
    assert body["database"] is False and body["ok"] is False


def test_readyz_says_the_database_is_up_when_a_write_commits(client):
    assert client.get("/readyz").json()["database"] is True


@pytest.fixture
def token(admin_user):
    return tokens.token_create(user=admin_user, name="reader")[1]


def test_a_read_through_the_api_works_while_the_database_takes_no_writes(client, token, read_only, caplog):
    response = client.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert "its use was not recorded" in caplog.text


def test_a_tokens_use_is_stamped_at_most_once_a_minute(token):
    tokens.token_authenticate(token)
    first = ApiToken.objects.get().last_used_at
    tokens.token_authenticate(token)
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=first.replace(year=first.year - 1))
    tokens.token_authenticate(token)
    assert ApiToken.objects.get().last_used_at > first


def test_in_production_the_probes_answer_over_plain_http():
    code = (
        "from django.test import Client; import json; c = Client(); "
        "print(json.dumps([c.get(p).status_code for p in ('/healthz', '/accounts/login/')]))"
    )
    result = manage("shell", "-c", code, DEBUG="0", SECRET_KEY=SECRET, ALLOWED_HOSTS="testserver")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [200, 301]


# --- a live consumer on each queue -------------------------------------------------------------


def test_a_queue_is_alive_by_its_recent_heartbeat_or_by_a_run_that_beats(settings):
    from datetime import timedelta

    from django.utils import timezone

    from labelling import health
    from labelling.models import Heartbeat, PipelineRun

    settings.CONSUMER_HEARTBEAT_MAX_AGE_S = 150
    assert health.consumers_alive() == {"pipeline": False, "train": False}
    health.heartbeat_record("queue:pipeline")
    assert health.consumers_alive() == {"pipeline": True, "train": False}
    Heartbeat.objects.update(at=timezone.now() - timedelta(seconds=151))  # stopped a while ago
    assert health.consumers_alive() == {"pipeline": False, "train": False}
    # Every worker busy with a long training round: the round's own heartbeat proves the consumer.
    PipelineRun.objects.create(kind="train", status="running", heartbeat_at=timezone.now())
    assert health.consumers_alive() == {"pipeline": False, "train": True}


def test_readyz_is_503_while_a_queue_has_no_live_consumer_and_names_it(client):
    from labelling import health

    health.heartbeat_record("queue:train")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["consumers"] == {"pipeline": False, "train": True}


def test_readiness_asks_only_for_the_queues_named_in_ready_queues(client, settings):
    from labelling import health

    health.heartbeat_record("queue:pipeline")  # no training consumer anywhere
    settings.READY_QUEUES = ["pipeline"]
    assert health.consumers_alive() == {"pipeline": True}
    assert client.get("/readyz").json()["consumers"] == {"pipeline": True}
    settings.READY_QUEUES = ["pipeline", "train"]
    assert client.get("/readyz").json()["consumers"] == {"pipeline": True, "train": False}


@pytest.mark.parametrize("value", ["", "pipeline,gpu", " , "])
def test_ready_queues_naming_no_queue_or_an_unknown_one_stops_start_up(value):
    result = manage("check", READY_QUEUES=value)
    assert result.returncode != 0 and "READY_QUEUES=" in result.stderr


@pytest.mark.parametrize(
    ("queue", "command"),
    [("pipeline", ("run_huey", "--workers", "1", "--worker-type", "thread")), ("train", ("run_train_worker",))],
)
def test_a_real_consumer_proves_itself_as_it_starts(tmp_path, queue, command, settings):
    from bench.faults import Consumer, worker_env
    from labelling import health
    from tests.pipelines.conftest import wait_until

    settings.CONSUMER_HEARTBEAT_MAX_AGE_S = 150
    worker = Consumer(worker_env("127.0.0.1:1"), tmp_path / "consumer.log", command).start()
    try:
        wait_until(lambda: health.consumers_alive()[queue], timeout_s=60, what=f"the {queue} consumer's heartbeat")
    finally:
        worker.stop()
    assert worker.log.read_text().count("Traceback") == 0, worker.log.read_text()[-2000:]


@pytest.mark.parametrize(
    ("public", "paths", "statuses"),
    [
        ("", ("/api/docs", "/api/openapi.json"), [302, 302]),  # to sign in
        ("1", ("/api/openapi.json",), [200]),  # (the docs page needs collected static files)
    ],
)
def test_in_production_the_api_docs_are_for_signed_in_users_unless_made_public(public, paths, statuses):
    code = (
        "from django.test import Client; import json; c = Client(); "
        f"print(json.dumps([c.get(p, secure=True).status_code for p in {paths!r}]))"
    )
    env = {"API_DOCS_PUBLIC": public} if public else {}
    result = manage("shell", "-c", code, DEBUG="0", SECRET_KEY=SECRET, ALLOWED_HOSTS="testserver", **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == statuses


def test_the_docs_guard_lets_a_user_with_a_role_through_and_refuses_one_without(rf, reviewer, django_user_model):
    from django.contrib.auth.models import AnonymousUser
    from django.core.exceptions import PermissionDenied
    from django.http import HttpResponse

    from shaping_web.api import _docs_for_users_with_a_role

    view = _docs_for_users_with_a_role(lambda request: HttpResponse("the docs"))
    request = rf.get("/api/docs")
    request.user = reviewer
    assert view(request).content == b"the docs"
    request.user = django_user_model.objects.create_user(username="nobody", password="x")
    with pytest.raises(PermissionDenied):
        view(request)
    request.user = AnonymousUser()
    assert view(request)["Location"].startswith("/accounts/login/?next=")
