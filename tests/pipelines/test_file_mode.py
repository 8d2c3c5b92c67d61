"""`manage.py run_pipeline` in file mode against the real tritonserver: JSONL in, JSONL out."""

import json

import pytest
from django.core.management import CommandError, call_command

from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn

PROMPTS = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"Tell me about star {i}."}]} for i in range(3)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def rubric(db):
    return catalogue_services.rubric_create(
        data=RubricIn(
            slug="voice",
            name="Voice",
            criteria=[CriterionIn(key="in_character", description="In character", scale_min=1, scale_max=5)],
        )
    )


def test_generate_then_judge_files(tmp_path, triton_url, rubric):
    generated = tmp_path / "generated.jsonl"
    call_command(
        "run_pipeline",
        kind="generate",
        input=write_jsonl(tmp_path / "in.jsonl", PROMPTS),
        output=generated,
        group_size=3,
        max_tokens=8,
        triton_url=triton_url,
    )
    rows = read_jsonl(generated)
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]  # input order, whatever order items finished in
    assert all(len(r["completions"]) == 3 for r in rows)

    to_judge = [
        {"id": r["id"], "messages": p["messages"], "completion": r["completions"][0]["text"]}
        for r, p in zip(rows, PROMPTS, strict=True)
    ]
    judged = tmp_path / "judged.jsonl"
    call_command(
        "run_pipeline",
        kind="judge",
        input=write_jsonl(tmp_path / "j.jsonl", to_judge),
        output=judged,
        rubric="voice",
        triton_url=triton_url,
    )
    judged_rows = read_jsonl(judged)
    assert [r["id"] for r in judged_rows] == ["q0", "q1", "q2"]
    for row in judged_rows:
        assert row["ok"] is True and 1 <= row["scores"]["in_character"] <= 5


def test_bad_lines_run_nothing_and_name_the_line(tmp_path, triton_url):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(PROMPTS[0]) + "\n{not json\n" + json.dumps({"id": "x"}) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(CommandError) as caught:
        call_command("run_pipeline", kind="generate", input=source, output=out, triton_url=triton_url)
    assert "in.jsonl:2: invalid JSON" in str(caught.value)
    assert "in.jsonl:3: messages" in str(caught.value)
    assert not out.exists()


@pytest.mark.slow  # every line waits out its retries and their backoff
def test_a_dead_backend_fails_every_line_visibly(tmp_path, db):
    from inference.triton_server import free_port

    out = tmp_path / "out.jsonl"
    with pytest.raises(CommandError, match="0 ok, 3 failed"):
        call_command(
            "run_pipeline",
            kind="generate",
            input=write_jsonl(tmp_path / "in.jsonl", PROMPTS),
            output=out,
            max_tokens=4,
            triton_url=f"127.0.0.1:{free_port()}",
        )
    rows = read_jsonl(out)
    assert [r["error"]["error"] for r in rows] == ["BackendUnavailable"] * 3


def test_unknown_rubric_or_character_is_refused(tmp_path, db):
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    with pytest.raises(CommandError, match="no rubric 'nope'"):
        call_command("run_pipeline", kind="judge", input=source, output=tmp_path / "o", rubric="nope")
    with pytest.raises(CommandError, match="no character 'ghost'"):
        call_command("run_pipeline", kind="generate", input=source, output=tmp_path / "o", character="ghost")
