"""The judge is asked about the criteria without a rule only; the TRL reward function scores
the rule criteria itself, and with rules only it calls no judge at all."""

import re

import pytest

from inference.errors import InvalidRequest
from inference.judging import JudgeResult, judge_guidance, judge_max_tokens, judge_messages, parse_judgment
from inference.reward import make_reward_function

MIXED = {
    "slug": "mixed",
    "version": 1,
    "criteria": [
        {"key": "in_character", "description": "Sounds like Aria", "scale_min": 1, "scale_max": 5},
        {
            "key": "short",
            "description": "At most three words",
            "scale_min": 0,
            "scale_max": 1,
            "rule": {"kind": "length", "unit": "words", "max": 3},
        },
    ],
}
RULES_ONLY = {**MIXED, "slug": "rules", "criteria": MIXED["criteria"][1:]}


def test_the_judge_prompt_guidance_and_parser_leave_the_rule_criteria_out():
    text = judge_messages(MIXED, [{"role": "user", "content": "Hi"}], "Hello")[-1]["content"]
    assert "## in_character" in text and "## short" not in text and "<short>" not in text
    pattern = re.compile(judge_guidance(MIXED))
    assert pattern.fullmatch("<rationale>ok</rationale>\n<scores>\n<in_character>4</in_character>\n</scores>")
    assert judge_max_tokens(MIXED) < judge_max_tokens({"criteria": [{**c, "rule": None} for c in MIXED["criteria"]]})
    parsed = parse_judgment(MIXED, "<rationale>ok</rationale><scores><in_character>4</in_character></scores>")
    assert parsed.scores == {"in_character": 4}


def test_a_rubric_of_rules_only_is_no_request_for_the_judge_model():
    with pytest.raises(InvalidRequest, match="every criterion is a rule"):
        judge_guidance(RULES_ONLY)


class FakeJudge:
    def __init__(self):
        self.asked = []

    def judge(self, request):
        self.asked.append([c["key"] for c in request.rubric["criteria"]])
        return JudgeResult(scores={"in_character": 5}, rationale="", raw="")


def test_the_reward_function_merges_the_rule_scores_into_the_judges():
    backend = FakeJudge()
    reward = make_reward_function(MIXED, backend=backend)
    rewards = reward(prompts=["Hi", "Hi"], completions=["Hello there", "Hello there, traveller, how are you"])
    assert rewards == [1.0, 0.5]  # in_character 5 -> 1.0 each; short 1 / 0
    assert backend.asked == [["in_character"], ["in_character"]]


def test_the_reward_function_with_rules_only_never_reaches_triton():
    reward = make_reward_function(RULES_ONLY, triton_url="127.0.0.1:1")  # nothing listens there
    assert reward(
        prompts=["Hi"] * 2, completions=[[{"role": "assistant", "content": "Hi!"}], "one two three four"]
    ) == [
        1.0,
        0.0,
    ]


def test_the_reward_function_refuses_a_bad_rule_up_front():
    bad = {**RULES_ONLY, "criteria": [{**RULES_ONLY["criteria"][0], "rule": {"kind": "regex", "pattern": "("}}]}
    with pytest.raises(ValueError, match="pattern"):
        make_reward_function(bad, backend=FakeJudge())
