"""Pages and fragments by persona: the dashboard shows runs to users with a role, the inference
health fragment needs a role, and a reviewer never sees where the backend lives."""

import pytest
from django.test import Client

from inference.backends.base import Health
from labelling.runs import executor
from tests.clients import client_as


@pytest.fixture
def backend_down(monkeypatch):
    """The backend as a health probe finds it when its server cannot be reached."""
    health = Health(
        backend="triton",
        target="10.20.30.40:8001",
        server_ready=False,
        models={"qwen3": False, "judge": False},
        detail="cannot reach Triton at 10.20.30.40:8001: failed to connect to all addresses; "
        "last error: UNKNOWN: ipv4:10.20.30.40:8001: Connection refused (see grpc://triton.internal:8001/v2)",
    )
    monkeypatch.setattr(executor, "_health", lambda: health)
    return health


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_sends_an_anonymous_visitor_to_sign_in(client, world):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_dashboard_tells_a_user_in_no_role_to_ask_for_one_and_shows_nothing_else(outsider, world):
    page = client_as(outsider).get("/").content.decode()
    assert "no role yet" in page
    assert f'id="run-{world["run"].pk}"' not in page and "Mira" not in page and "ws-connect" not in page


@pytest.mark.parametrize("persona", ["reviewer", "admin_user"])
def test_the_dashboard_shows_runs_and_the_live_feed_to_a_role(request, persona, world):
    page = client_as(request.getfixturevalue(persona)).get("/").content.decode()
    assert f'id="run-{world["run"].pk}"' in page and 'ws-connect="/ws/live/"' in page and "no role yet" not in page


# --- the inference health fragment ---------------------------------------------------------


def test_the_health_fragment_sends_an_anonymous_visitor_to_sign_in(client, db, backend_down):
    response = client.get("/inference/health")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_health_fragment_refuses_a_user_in_no_role(outsider, backend_down):
    assert client_as(outsider).get("/inference/health").status_code == 403


def test_a_reviewer_sees_whether_inference_is_up_but_not_where_it_lives(reviewer, backend_down):
    response = client_as(reviewer).get("/inference/health", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and "not ready" in html and "cannot reach Triton" in html
    for address in ("10.20.30.40", ":8001", "triton.internal", "grpc://", "ipv4:"):
        assert address not in html, address


def test_an_admin_sees_where_the_backend_lives(admin_user, backend_down):
    html = client_as(admin_user).get("/inference/health").content.decode()
    assert "10.20.30.40:8001" in html and "not ready" in html


def test_the_health_fragment_refuses_a_post(reviewer, backend_down):
    assert client_as(reviewer).post("/inference/health").status_code == 405


def test_internal_addresses_are_taken_out_of_a_message_and_the_rest_is_kept():
    from labelling.errors import without_addresses

    text = (
        "no model at /srv/models/qwen3; (http://10.0.0.2:9000/x) down; [::1]:8001 and db.internal:5432 refused; "
        "ipv4:10.0.0.3:8001: gone; qwen3:0.6b scored 3:2"
    )
    assert without_addresses(text) == (
        "no model at [address]; ([address]) down; [address] and [address] refused; [address]: gone; qwen3:0.6b scored 3:2"
    )


# --- the API: what a reviewer's token reads of failures ------------------------------------


def test_model_versions_are_an_admins_and_a_runs_errors_name_addresses_only_to_an_admins_token(
    db, reviewer, admin_user
):
    from labelling.access import tokens
    from labelling.models import GeneratorVersion, PipelineRun

    v1 = GeneratorVersion.objects.get(model_name="qwen3", number=1)
    error = "Triton at 10.20.30.40:8001 did not load /srv/shaping/generators/qwen3/2/onnx: timeout"
    GeneratorVersion.objects.create(model_name="qwen3", number=2, parent=v1, status="failed", method="sft", error=error)
    run = PipelineRun.objects.create(
        kind="generate", status="failed", errors=[{"item": None, "error": "BackendUnavailable", "message": error}]
    )

    def get(user, path):
        token = tokens.token_create(user=user, name="t")[1]
        return Client().get(path, headers={"Authorization": f"Bearer {token}"})

    assert get(reviewer, "/api/model-versions").status_code == 403  # the Models page is an admin's
    assert get(admin_user, "/api/model-versions/2").json()["error"] == error
    assert get(admin_user, f"/api/runs/{run.pk}").json()["errors"][0]["message"] == error
    seen = get(reviewer, f"/api/runs/{run.pk}").json()["errors"][0]
    assert seen["message"] == "Triton at [address] did not load [address]: timeout"
    assert seen["error"] == "BackendUnavailable"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fe80::1%eth0 refused", "[address] refused"),
        ("at 2001:db8:0:0:0:0:2:1 now", "at [address] now"),
        ("::1 refused", "[address] refused"),
        ("[fe80::1%eth0]:8001 refused", "[address] refused"),
        ("triton.shaping.svc.cluster.local refused", "[address] refused"),
        ("redis.cache.svc.cluster.local:6379 timed out", "[address] timed out"),
        ("db.internal down", "[address] down"),
        ("no models/qwen3/1/model.onnx here", "no [address] here"),
        ("see ./data/x.", "see [address]."),
        # What is not an address stays: a time, a score, a model tag, a list of kinds.
        ("at 12:30:45 scored 3:2 with qwen3:0.6b, kind grpo/dpo/sft, Foo::bar", None),
    ],
)
def test_ipv6_zones_cluster_names_and_relative_paths_are_taken_out_too(text, shown):
    from labelling.errors import without_addresses

    assert without_addresses(text) == (text if shown is None else shown)
