"""Rule criteria, scored without a model: each kind, bad specs, and hostile texts and patterns."""

import re
import time
from pathlib import Path

import pytest
import yaml

from shaping_core import rules
from shaping_core.rules import RuleInvalid, check_rule, score_rule


def refused(spec) -> RuleInvalid:
    with pytest.raises(RuleInvalid) as caught:
        check_rule(spec)
    return caught.value


# --- regex ----------------------------------------------------------------------------


def test_a_regex_rule_scores_the_top_of_the_scale_when_the_answer_matches():
    spec = {"kind": "regex", "pattern": r"\bstars?\b"}
    assert score_rule(spec, "I see the stars tonight.", 1, 5) == 5
    assert score_rule(spec, "Only fog.", 1, 5) == 1


def test_a_not_match_regex_rule_rewards_the_absence_of_the_pattern():
    spec = {"kind": "regex", "pattern": "(?i)as an ai", "must": "not_match"}
    assert score_rule(spec, "As an AI, I cannot.", 0, 2) == 0
    assert score_rule(spec, "The lamp is lit.", 0, 2) == 2


def test_a_regex_rule_reads_the_answer_not_the_thinking():
    spec = {"kind": "regex", "pattern": "secret"}
    assert score_rule(spec, "<think>the secret plan</think>Nothing to say.", 1, 5) == 1


def test_a_regex_that_does_not_compile_is_refused_naming_the_pattern():
    problem = refused({"kind": "regex", "pattern": "(unclosed"})
    assert problem.field == "pattern"
    assert "does not compile" in problem.message


def test_a_catastrophic_regex_is_refused():
    for pattern in ("(a+)+$", "(a*)*b", "((ab)*c)+", "(?:x|(y+))*z", "(?=(a+)+)"):
        assert refused({"kind": "regex", "pattern": pattern}).field == "pattern", pattern


def test_bounded_nesting_is_allowed():
    check_rule({"kind": "regex", "pattern": r"(\w+\s){1,3}end"})
    check_rule({"kind": "regex", "pattern": r"(ab)+c+"})


def test_a_too_long_pattern_is_refused():
    assert "at most" in refused({"kind": "regex", "pattern": "a" * (rules.MAX_PATTERN_CHARS + 1)}).message


def test_a_huge_text_is_scanned_only_up_to_the_cap_and_quickly():
    spec = {"kind": "regex", "pattern": "needle"}
    text = "x" * (rules.MAX_TEXT_CHARS + 10) + "needle"
    start = time.monotonic()
    assert score_rule(spec, text * 20, 1, 5) == 1
    assert time.monotonic() - start < 1


def test_a_regex_rule_with_a_bad_must_is_refused():
    assert refused({"kind": "regex", "pattern": "a", "must": "maybe"}).field == "must"


# --- length ---------------------------------------------------------------------------


def test_a_length_rule_scores_inside_the_range_at_the_top():
    spec = {"kind": "length", "unit": "words", "min": 3, "max": 5}
    assert score_rule(spec, "one two three four", 1, 5) == 5
    assert score_rule(spec, "one two", 1, 5) == 1
    assert score_rule(spec, "a b c d e f", 1, 5) == 1


def test_a_length_rule_in_characters_with_only_a_max():
    spec = {"kind": "length", "unit": "chars", "max": 5}
    assert score_rule(spec, "abcde", 0, 1) == 1
    assert score_rule(spec, "abcdef", 0, 1) == 0


def test_a_length_rule_with_falloff_falls_linearly_and_rounds_half_up():
    spec = {"kind": "length", "unit": "words", "max": 10, "falloff": 4}
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    assert [score_rule(spec, words(n), 1, 5) for n in (10, 11, 12, 13, 14, 20)] == [5, 4, 3, 2, 1, 1]


def test_bad_length_specs_are_refused_naming_the_field():
    assert refused({"kind": "length", "unit": "lines", "max": 3}).field == "unit"
    assert refused({"kind": "length", "unit": "words"}).field == "min"
    assert refused({"kind": "length", "unit": "words", "min": -1}).field == "min"
    assert refused({"kind": "length", "unit": "words", "min": 5, "max": 2}).field == "max"
    assert refused({"kind": "length", "unit": "words", "max": True}).field == "max"
    assert refused({"kind": "length", "unit": "words", "max": 3, "falloff": 1.5}).field == "falloff"


# --- think_valid ----------------------------------------------------------------------


def test_think_valid_uses_the_projects_validator():
    spec = {"kind": "think_valid"}
    assert score_rule(spec, "<think>hm</think>The answer.", 1, 3) == 3
    assert score_rule(spec, "Plain answer.", 1, 3) == 3
    assert score_rule(spec, "<think>never closed", 1, 3) == 1
    assert score_rule(spec, "<think>a</think><think>b</think>x", 1, 3) == 1


def test_think_valid_takes_a_verdict_made_already():
    spec = {"kind": "think_valid"}
    assert score_rule(spec, "The answer.", 1, 3, think_valid=False) == 1


# --- json_schema ----------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0, "maximum": 200},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "mood": {"enum": ["calm", "wry"]},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def test_a_json_schema_rule_scores_valid_json_at_the_top():
    spec = {"kind": "json_schema", "schema": SCHEMA}
    assert score_rule(spec, '{"name": "Mira", "age": 40, "tags": ["keeper"], "mood": "wry"}', 1, 5) == 5
    assert score_rule(spec, '<think>plan</think>{"name": "Mira"}', 1, 5) == 5


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"name": "Mira"',
        '{"age": 3}',
        '{"name": ""}',
        '{"name": "Mira", "age": -1}',
        '{"name": "Mira", "age": true}',
        '{"name": "Mira", "age": 1.5}',
        '{"name": "Mira", "tags": ["a", "b", "c", "d"]}',
        '{"name": "Mira", "tags": [1]}',
        '{"name": "Mira", "mood": "angry"}',
        '{"name": "Mira", "extra": 1}',
        '["Mira"]',
        "[" * 100_000,
    ],
)
def test_a_json_schema_rule_scores_anything_else_at_the_bottom(text):
    assert score_rule({"kind": "json_schema", "schema": SCHEMA}, text, 1, 5) == 1


def test_unsupported_schema_keywords_are_refused_with_their_path():
    problem = refused({"kind": "json_schema", "schema": {"properties": {"x": {"pattern": "a+"}}}})
    assert problem.field == "schema.properties.x.pattern"
    assert refused({"kind": "json_schema", "schema": {"type": "text"}}).field == "schema.type"
    assert refused({"kind": "json_schema", "schema": []}).field == "schema"
    assert refused({"kind": "json_schema", "schema": {"minLength": "2"}}).field == "schema.minLength"


# --- keywords -------------------------------------------------------------------------


def test_a_keywords_rule_scores_the_share_of_words_used_and_avoided():
    spec = {"kind": "keywords", "include": ["lamp", "tide"], "avoid": ["assistant", "as an AI"]}
    assert score_rule(spec, "The lamp burns; the tide turns.", 1, 5) == 5
    assert score_rule(spec, "The LAMP burns, as an ai would say.", 1, 5) == 3  # 2 of 4
    assert score_rule(spec, "An assistant, as an AI, sees fog.", 1, 5) == 1


def test_keywords_match_whole_words_only():
    spec = {"kind": "keywords", "include": ["sea"]}
    assert score_rule(spec, "I searched.", 0, 1) == 0
    assert score_rule(spec, "The sea.", 0, 1) == 1


def test_keywords_are_never_patterns():
    spec = {"kind": "keywords", "include": ["(a+)+$", "c.t"]}
    assert score_rule(spec, "a" * 5000 + "! cat", 0, 2) == 0


def test_bad_keywords_specs_are_refused():
    assert refused({"kind": "keywords"}).field == "include"
    assert refused({"kind": "keywords", "include": "lamp"}).field == "include"
    assert refused({"kind": "keywords", "avoid": ["ok", ""]}).field == "avoid[1]"


# --- repetition -----------------------------------------------------------------------

LOOP = "I am a ship, a vessel, a person. I am a ship, a vessel, a person. I am a ship, a vessel, a person."


def test_a_repetition_rule_scores_an_answer_that_repeats_no_phrase_at_the_top():
    spec = {"kind": "repetition"}
    assert score_rule(spec, "Find the Big Dipper, then follow its pointer stars up to Polaris.", 1, 5) == 5
    assert score_rule(spec, LOOP, 1, 5) == 1


def test_repeated_phrases_are_counted_without_case_or_punctuation():
    assert rules.repeated_share("The tide turns. the TIDE, turns!", 3) == pytest.approx(1 / 4)
    assert rules.repeated_share("too short", 3) == 0.0
    assert rules.repeated_share("", 1) == 0.0


def test_a_repetition_rule_allows_a_share_and_falls_off_linearly_beyond_it():
    text = "one two three one two three one two three"  # 7 three-word phrases, 4 of them repeats
    assert rules.repeated_share(text, 3) == pytest.approx(4 / 7)
    assert rules.repeated_share(LOOP, 3) == pytest.approx(14 / 22)
    assert score_rule({"kind": "repetition", "max": 0.6}, text, 1, 5) == 5
    assert score_rule({"kind": "repetition", "max": 0.5, "falloff": 1 / 7}, text, 1, 5) == 3  # half way down
    assert score_rule({"kind": "repetition", "max": 0.5, "falloff": 0.05}, text, 1, 5) == 1
    assert score_rule({"kind": "repetition", "n": 8}, LOOP, 0, 1) == 0


def test_bad_repetition_specs_are_refused_naming_the_field():
    assert refused({"kind": "repetition", "n": 0}).field == "n"
    assert refused({"kind": "repetition", "n": 11}).field == "n"
    assert refused({"kind": "repetition", "n": True}).field == "n"
    assert refused({"kind": "repetition", "max": 1.5}).field == "max"
    assert refused({"kind": "repetition", "falloff": float("nan")}).field == "falloff"
    assert refused({"kind": "repetition", "words": 3}).field == "words"


# --- any kind -------------------------------------------------------------------------


def test_unknown_kinds_and_fields_are_refused():
    assert refused({"kind": "vibes"}).field == "kind"
    assert refused({"pattern": "a"}).field == "kind"
    assert refused("regex").field == ""
    assert refused({"kind": "think_valid", "strict": True}).field == "strict"
    assert refused({"kind": "regex"}).field == "pattern"


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "regex", "pattern": "x"},
        {"kind": "length", "unit": "chars", "min": 3, "max": 9, "falloff": 2},
        {"kind": "think_valid"},
        {"kind": "json_schema", "schema": {"type": "object"}},
        {"kind": "keywords", "include": ["a", "b", "c"], "avoid": ["d"]},
        {"kind": "repetition", "n": 1, "max": 0.1, "falloff": 0.3},
    ],
)
@pytest.mark.parametrize("text", ["", "x", "<think>", "a b c d", "{}", "é" * 50, "\x00\n</think>x" * 30])
def test_scores_are_integers_inside_the_scale(spec, text):
    for low, high in ((1, 5), (0, 1), (-3, 7)):
        value = score_rule(spec, text, low, high)
        assert isinstance(value, int) and low <= value <= high


# --- a rubric's rule criteria ---------------------------------------------------------

RUBRIC = {
    "slug": "voice",
    "criteria": [
        {"key": "in_character", "scale_min": 1, "scale_max": 5},
        {"key": "short", "scale_min": 0, "scale_max": 1, "rule": {"kind": "length", "unit": "words", "max": 3}},
    ],
}


def test_the_model_sees_only_the_criteria_without_a_rule():
    assert [c["key"] for c in rules.model_rubric(RUBRIC)["criteria"]] == ["in_character"]
    assert rules.model_rubric({"criteria": [RUBRIC["criteria"][1]]}) is None


def test_rule_scores_are_merged_in_the_rubrics_order_and_replace_a_given_one():
    assert rules.with_rule_scores(RUBRIC["criteria"], {"in_character": 4}, "Two words") == {
        "in_character": 4,
        "short": 1,
    }
    assert rules.with_rule_scores(RUBRIC["criteria"], {"in_character": 4, "short": 0}, "ok") == {
        "in_character": 4,
        "short": 1,
    }


def test_the_rule_examples_in_the_import_docs_are_valid_as_written():
    """docs/import-format.md shows one spec per kind: each must pass check_rule, and the
    keywords example must score what its comment says (2 of 4 on 1..5 scores 3)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import-format.md").read_text()
    block = re.search(r"```yaml\n(# regex:.*?)```", doc, re.S).group(1)
    specs = [yaml.safe_load(chunk)["rule"] for chunk in block.split("\n\n") if "rule:" in chunk]
    assert [s["kind"] for s in specs] == ["regex", "length", "think_valid", "json_schema", "keywords", "repetition"]
    for spec in specs:
        rules.check_rule(spec)
    keywords, repetition = specs[-2:]
    assert rules.score_rule(keywords, "Tea by the window, said the assistant.", 1, 5) == 3
    assert rules.score_rule(repetition, LOOP, 1, 5) == 1  # a share of 0.64, past 0.1 + 0.4
