"""Settings fail loudly on bad values; production mode demands a secret and passes the deploy check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from shaping_web.settings import envbool, envint

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"}}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_envbool_refuses_a_value_it_does_not_understand(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe'"):
        envbool("X_FLAG", False)
    monkeypatch.setenv("X_FLAG", "off")
    assert envbool("X_FLAG", True) is False


def test_envint_refuses_non_integers_and_values_below_the_minimum(monkeypatch):
    monkeypatch.setenv("X_N", "two")
    with pytest.raises(ImproperlyConfigured, match="expected an integer"):
        envint("X_N", 1)
    monkeypatch.setenv("X_N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        envint("X_N", 1, minimum=1)


def test_production_mode_refuses_to_start_without_a_secret_key():
    result = _manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_production_mode_passes_the_deploy_check():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="k" * 60 + "-production-secret-for-the-check",
        ALLOWED_HOSTS="shaping.example.org",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_the_database_is_postgresql_with_database_url_else_sqlite_in_wal_mode(db):
    from django.conf import settings
    from django.db import connection

    if settings.DATABASE_URL:
        assert connection.vendor == "postgresql"
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_redis_url_switches_huey_and_the_channel_layer():
    from django.conf import settings

    if settings.REDIS_URL:
        assert settings.HUEY["huey_class"] == "huey.RedisHuey"
        assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    else:
        assert settings.HUEY["huey_class"] == "huey.SqliteHuey"
        assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"


@pytest.mark.slow  # copies and hashes every static file: about 20 seconds
def test_production_static_files_collect_with_their_manifest(tmp_path):
    """With DEBUG off pages name static files through the manifest; every file (vendored
    ones included) must collect, or the first page fails."""
    result = _manage(
        "collectstatic",
        "--noinput",
        "-v",
        "0",
        DEBUG="0",
        SECRET_KEY="k" * 60 + "-production-secret-for-the-check",
        ALLOWED_HOSTS="shaping.example.org",
        DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = (tmp_path / "staticfiles" / "staticfiles.json").read_text()
    assert "vendor/model-viewer-4.4.0.min.js" in manifest and "css/app.css" in manifest
