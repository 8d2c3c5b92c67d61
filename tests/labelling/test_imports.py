"""Imports are validated, atomic, and name the file, line and field of every problem."""

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labelling.catalogue.importers import ImportFailed, import_text
from labelling.models import Character, Generation, Group, Judgment, Prompt, PromptSet, Rubric

GOOD_YAML = """\
characters:
  - name: Bo
    slug: bo
    persona: You are Bo, a gruff lighthouse keeper.
    traits: [gruff, kind]
rubrics:
  - slug: bo-voice
    name: Bo's voice
    criteria:
      - key: gruff
        description: Gruff but kind.
        scale_min: 1
        scale_max: 5
        levels: {"1": "sweet", "5": "gruff and kind"}
prompt_sets:
  - slug: bo-prompts
    name: Bo prompts
    prompts:
      - id: storm
        messages: [{role: user, content: "A storm is coming?"}]
      - messages: [{role: user, content: "Why a lighthouse?"}]
"""


def _counts():
    return [m.objects.count() for m in (Character, Rubric, PromptSet, Prompt, Group, Generation, Judgment)]


def _fails(name, text, **kwargs) -> list[str]:
    before = _counts()
    with pytest.raises(ImportFailed) as exc:
        import_text(name, text, **kwargs)
    assert _counts() == before, "a failed import must write nothing"
    return [str(p) for p in exc.value.problems]


def test_a_good_yaml_file_imports_everything(db):
    summary = import_text("bo.yaml", GOOD_YAML)
    assert (summary.characters, summary.rubrics, summary.prompt_sets, summary.prompts) == (
        1,
        1,
        1,
        2,
    )
    assert Character.objects.get(slug="bo").traits == ["gruff", "kind"]
    assert list(Prompt.objects.values_list("external_id", flat=True)) == ["storm", "2"]
    assert Rubric.objects.get(slug="bo-voice").criteria.get().levels == {
        "1": "sweet",
        "5": "gruff and kind",
    }


def test_a_missing_field_is_named_with_its_line(db):
    text = GOOD_YAML.replace("    persona: You are Bo, a gruff lighthouse keeper.\n", "")
    assert _fails("bo.yaml", text) == ["bo.yaml:2: characters[0].persona: field required"]


def test_a_wrong_type_is_named_with_the_line_of_the_field(db):
    text = GOOD_YAML.replace("scale_max: 5", "scale_max: five")
    (problem,) = _fails("bo.yaml", text)
    assert problem.startswith("bo.yaml:13: rubrics[0].criteria[0].scale_max: ")
    assert "integer" in problem


def test_bad_yaml_names_the_line(db):
    (problem,) = _fails("bad.yaml", "characters:\n  - name: [unclosed\n    slug: x\n")
    assert problem.startswith("bad.yaml:") and "invalid YAML/JSON" in problem


def test_malformed_jsonl_names_the_line_and_imports_no_line(db):
    lines = [
        json.dumps({"kind": "prompt_set", "slug": "s", "name": "S"}),
        json.dumps({"kind": "prompt", "prompt_set": "s", "messages": [{"role": "user", "content": "hi"}]}),
        '{"kind": "prompt", "prompt_set": "s", "messages": [',
    ]
    (problem,) = _fails("p.jsonl", "\n".join(lines))
    assert problem.startswith("p.jsonl:3: invalid JSON")


def test_an_escaped_nul_is_a_problem_on_its_line_and_imports_nothing(db):
    """PostgreSQL stores no NUL in text (a 500 there, where SQLite stored it): refused on both."""
    jsonl = "\n".join(
        [
            json.dumps({"kind": "prompt_set", "slug": "s", "name": "S"}),
            json.dumps({"kind": "prompt", "prompt_set": "s", "messages": [{"role": "user", "content": "hi\x00"}]}),
        ]
    )
    assert _fails("p.jsonl", jsonl) == ["p.jsonl:2: messages[0].content: text cannot hold the NUL character (\\u0000)"]
    yaml_text = GOOD_YAML.replace('"A storm is coming?"', '"A storm\\0 is coming?"')  # YAML's own escape
    assert _fails("bo.yaml", yaml_text) == [
        "bo.yaml:20: prompt_sets[0].prompts[0].messages[0].content: text cannot hold the NUL character (\\u0000)"
    ]
    assert _fails("s.jsonl", json.dumps({"kind": "prompt", "prompt_set": "s\x00", "messages": []})) == [
        "s.jsonl:1: prompt_set: text cannot hold the NUL character (\\u0000)"
    ]


def test_every_problem_in_a_file_is_reported_at_once(db):
    lines = [
        json.dumps({"kind": "character", "name": "A", "slug": "Not A Slug", "persona": "p"}),
        json.dumps({"kind": "spaceship"}),
        json.dumps(
            {
                "kind": "prompt",
                "prompt_set": "nowhere",
                "messages": [{"role": "user", "content": "x"}],
            }
        ),
        json.dumps({"kind": "prompt", "prompt_set": "nowhere", "messages": [], "colour": "red"}),
    ]
    problems = _fails("many.jsonl", "\n".join(lines))
    assert problems[0].startswith("many.jsonl:1: slug: String should match pattern")
    assert (
        problems[1]
        == "many.jsonl:2: kind: unknown kind 'spaceship'; expected one of character, rubric, prompt_set, prompt, group"
    )
    assert "many.jsonl:4: messages: List should have at least 1 item after validation, not 0" in problems
    assert "many.jsonl:4: colour: unknown field" in problems
    assert "many.jsonl:3: prompt_set: no prompt set 'nowhere' in this file or the database" in problems


def test_a_duplicate_slug_in_the_file_is_refused(db):
    line = json.dumps({"kind": "character", "name": "A", "slug": "a", "persona": "p"})
    assert _fails("dup.jsonl", f"{line}\n{line}\n") == [
        "dup.jsonl:2: slug: duplicate character slug 'a' (first on line 1)"
    ]


def test_a_slug_already_in_the_database_is_refused(demo):
    line = json.dumps({"kind": "character", "name": "Aria", "slug": "aria", "persona": "p"})
    assert _fails("again.jsonl", line) == ["again.jsonl:1: slug: a character with slug 'aria' already exists"]


def test_an_out_of_range_judge_score_is_refused(demo):
    record = {
        "kind": "group",
        "character": "aria",
        "prompt_set": "aria-demo",
        "prompt": "stars",
        "completions": ["a", "b"],
        "rubric": "aria-voice",
        "judge_scores": [
            {"scores": {"in-character": 5, "helpfulness": 5}},
            {"scores": {"in-character": 9, "helpfulness": 5}},
        ],
    }
    assert _fails("g.jsonl", json.dumps(record)) == [
        "g.jsonl:1: judge_scores[1].scores.in-character: 9 is outside 1..5"
    ]


def test_a_group_must_name_an_existing_prompt(demo):
    record = {
        "kind": "group",
        "character": "aria",
        "prompt_set": "aria-demo",
        "prompt": "nope",
        "completions": ["a"],
    }
    assert _fails("g.jsonl", json.dumps(record)) == ["g.jsonl:1: prompt: no prompt 'nope' in prompt set 'aria-demo'"]


def test_two_groups_for_one_prompt_in_one_file_are_refused_on_the_second_line(demo):
    # A file's groups become one import run, which holds one group per prompt: this crashed
    # with the database's unique-constraint error before.
    record = {"kind": "group", "character": "aria", "prompt_set": "aria-demo", "prompt": "stars", "completions": ["a"]}
    other = {**record, "prompt": "lonely"}
    text = "\n".join(json.dumps(r) for r in (record, other, record))
    assert _fails("g.jsonl", text) == [
        "g.jsonl:3: prompt: a second group for prompt 'stars' (the first is on line 1): a file's groups become "
        "one run, with one group per prompt; put it in another file"
    ]


def test_a_plain_prompts_jsonl_joins_the_default_prompt_set(demo):
    lines = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(3)]
    summary = import_text("plain.jsonl", "\n".join(lines), default_prompt_set="aria-demo")
    assert summary.prompts == 3
    assert Prompt.objects.filter(prompt_set__slug="aria-demo").count() == 9


def test_a_prompt_must_end_with_a_user_message(db):
    text = GOOD_YAML.replace(
        'content: "A storm is coming?"}]',
        'content: "A storm is coming?"}, {role: assistant, content: "Aye"}]',
    )
    (problem,) = _fails("bo.yaml", text)
    assert problem.startswith("bo.yaml:20: prompt_sets[0].prompts[0].messages: ")
    assert "last message must be from the user" in problem


def test_the_import_command_reports_problems_and_exits_nonzero(db, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "character"}\n')
    with pytest.raises(CommandError, match=r"bad.jsonl:1: name: field required"):
        call_command("import", str(bad))
    assert Character.objects.count() == 0


def test_the_import_command_imports_a_good_file(db, tmp_path: Path, capsys):
    good = tmp_path / "bo.yaml"
    good.write_text(GOOD_YAML)
    call_command("import", str(good))
    assert "imported 1 characters, 1 rubrics, 1 prompt sets, 2 prompts" in capsys.readouterr().out


def test_an_unknown_file_type_is_refused(db):
    assert _fails("notes.txt", "hello") == ["notes.txt: unknown file type .txt: use .jsonl, .yaml, .yml or .json"]
