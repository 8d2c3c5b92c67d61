"""`manage.py generate` against the real tritonserver: the first check a user runs."""

import json

import pytest
from django.core.management import CommandError, call_command

from inference.serving import reset_backend


@pytest.fixture
def on_triton(settings, triton_url):
    settings.INFERENCE_BACKEND = "triton"
    settings.TRITON_URL = triton_url
    reset_backend()
    yield
    reset_backend()


def test_prints_a_group_of_completions(on_triton, capsys, db):
    call_command("generate", "Where are we headed?", n=3, max_tokens=6, seed=1)
    out = capsys.readouterr().out
    assert out.count("--- #") == 3 and "prompt +" in out


def test_streams_text_as_it_comes(on_triton, capsys, db):
    call_command("generate", "Hello", stream=True, max_tokens=6, seed=2)
    out = capsys.readouterr().out
    streamed, _, final = out.partition("--- #0")
    assert streamed.strip() and final.strip().endswith(streamed.strip())


def test_judge_prints_scores(demo, on_triton, capsys):
    capsys.readouterr()
    call_command("generate", "North, past the reef.", model="judge", rubric="aria-voice", seed=1)
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert set(scores) == {"in-character", "helpfulness"}  # the rule criteria are never the model's to score


def test_bad_input_is_a_clear_error(on_triton, db):
    with pytest.raises(CommandError, match="InvalidRequest: max_tokens"):
        call_command("generate", "Hi", max_tokens=10**6)
    with pytest.raises(CommandError, match="no rubric 'nope'"):
        call_command("generate", "Hi", model="judge", rubric="nope")


def test_the_command_exits_when_done(triton_url, tmp_path):
    """Run as a user runs it: open gRPC streams must not keep the process alive."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "TRITON_URL": triton_url,
        "INFERENCE_BACKEND": "triton",
        "DATA_DIR": str(tmp_path),
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "generate", "Hello", "--n", "2", "--max-tokens", "4"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--- #") == 2
