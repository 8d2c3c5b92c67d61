"""Architext decision puzzles: checked rows become decision prompts; a bad row imports nothing."""

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labelling.access import tokens
from labelling.catalogue import architext
from labelling.catalogue.importers import ImportFailed
from labelling.models import Prompt, PromptSet

SAMPLE = Path(__file__).resolve().parents[2] / "labelling" / "demo" / "architext-sample.jsonl"


def test_the_sample_becomes_a_prompt_set_of_decision_prompts(db):
    created = architext.puzzles_import(SAMPLE.name, SAMPLE.read_text(), prompt_set="houses")
    prompts = list(created.prompts.order_by("id"))
    assert [p.external_id for p in prompts] == ["a1", "a2", "a3", "a4", "a5"]
    first = prompts[0].messages[-1]["content"]
    assert "the living room (7040 square units)" in first
    assert "the kitchen and the living room" in first  # they share a wall
    assert "<think>" in first and "Where do you go first" in first


# Row a1 of the sample, worked out by hand: the rooms by area (the shoelace formula on each
# rectangle), largest first, and every pair whose boxes share a stretch of wall.
A1_SCENE = [
    "Its rooms are:",
    "- the living room (7040 square units)",  # 88 x 80
    "- the bedroom 1 (4096 square units)",  # 64 x 64, ties broken by name
    "- the bedroom 2 (4096 square units)",
    "- the kitchen (3136 square units)",  # 56 x 56
    "- the bathroom (1760 square units)",  # 40 x 44
    "Rooms that share a wall: the bathroom and the bedroom 2; the bathroom and the kitchen; "
    "the bedroom 1 and the bedroom 2; the bedroom 1 and the living room; "
    "the bedroom 2 and the living room; the kitchen and the living room.",
]


def _a1_prompt(row: str | None = None) -> str:
    (puzzle,) = architext.parse_puzzles("x.jsonl", row or SAMPLE.read_text().splitlines()[0])
    return architext.decision_prompt(puzzle)


def test_synthesis_gives_the_scene_worked_out_by_hand():
    lines = _a1_prompt().splitlines()
    assert lines[0] == (
        'You have just arrived at a home described as: "a house with two bedrooms and a kitchen next to the living room".'
    )
    assert lines[1:8] == A1_SCENE
    assert "The living room is the largest room; the bathroom is the smallest." in lines[8]


def test_synthesis_is_deterministic_and_follows_the_layout():
    first = _a1_prompt()
    for row in SAMPLE.read_text().splitlines()[1:]:  # other puzzles in between change nothing
        _a1_prompt(row)
    assert _a1_prompt() == first  # a second, separate parse and synthesis
    row = json.loads(SAMPLE.read_text().splitlines()[0])
    # The bathroom moved off into a corner: smaller, and touching nothing.
    row["text"] = row["text"].replace(
        "bathroom: (168,96)(208,96)(208,140)(168,140)", "bathroom: (230,230)(250,230)(250,250)(230,250)"
    )
    moved = _a1_prompt(json.dumps(row)).splitlines()
    assert moved[6] == "- the bathroom (400 square units)"
    assert moved[7] == (
        "Rooms that share a wall: the bedroom 1 and the bedroom 2; the bedroom 1 and the living room; "
        "the bedroom 2 and the living room; the kitchen and the living room."
    )
    assert moved[:6] == first.splitlines()[:6]


@pytest.mark.parametrize(
    "row, field, message",
    [
        ('{"id": "b", "text": "a house without markers"}', "text", "[prompt]"),
        ('{"id": "b", "prompt": "p", "layout": "kitchen: (1,1)(2,2)"}', "layout", "at least 3"),
        ('{"id": "b", "prompt": "p", "layout": "kitchen: (1,1)(2,2)(900,3)"}', "layout", "outside 0..256"),
        ('{"id": "b", "prompt": "p", "layout": "kitchen (1,1)(2,2)(3,3)"}', "layout", "cannot read a room"),
        ('{"id": "b", "prompt": "p", "layout": "a: (1,1)(2,2)(3,3), a: (4,4)(5,5)(6,6)"}', "layout", "twice"),
        ('{"id": "b", "layout": "kitchen: (1,1)(2,2)(3,3)"}', "prompt", "required"),
        ('{"id": "b", "prompt": "p", "layout": "k: (1,1)(2,2)(3,3)", "colour": 1}', "colour", "unknown"),
        ('{"id": "a1", "prompt": "p", "layout": "k: (1,1)(2,2)(3,3)"}', "id", "duplicate"),
        ("[1, 2]", "", "JSON object"),
        ("{not json", "", "invalid JSON"),
    ],
)
def test_a_bad_row_names_its_line_and_field_and_imports_nothing(db, row, field, message):
    text = SAMPLE.read_text().splitlines()[0] + "\n" + row + "\n"
    with pytest.raises(ImportFailed) as failed:
        architext.puzzles_import("rows.jsonl", text, prompt_set="houses")
    (problem,) = failed.value.problems
    assert (problem.line, problem.field) == (2, field) and message in problem.message, problem
    assert not PromptSet.objects.exists() and not Prompt.objects.exists()


def test_the_cli_and_the_api_import_puzzles(db, admin_user, client, capsys):
    call_command("import_puzzles", str(SAMPLE), "--prompt-set", "houses")
    assert "5 decision prompts" in capsys.readouterr().out
    with pytest.raises(CommandError, match="already exists"):
        call_command("import_puzzles", str(SAMPLE), "--prompt-set", "houses")
    token = tokens.token_create(user=admin_user, name="t")[1]
    response = client.post(
        "/api/puzzles",
        json.dumps({"content": SAMPLE.read_text(), "prompt_set": "flats"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201 and response.json()["prompt_count"] == 5
    bad = client.post(
        "/api/puzzles",
        json.dumps({"content": '{"id": 1}', "prompt_set": "nope"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 400 and "line 1: prompt" in bad.json()["errors"]
    assert not PromptSet.objects.filter(slug="nope").exists()
