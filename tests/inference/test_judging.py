"""The judge's prompt, guidance and parser (pure functions, no model)."""

import re

import pytest

from inference.errors import InvalidRequest, JudgeOutputError
from inference.judging import (
    RATIONALE_MAX_CHARS,
    check_rubric,
    judge_guidance,
    judge_max_tokens,
    judge_messages,
    parse_judgment,
)

RUBRIC = {
    "slug": "aria-voice",
    "name": "Aria's voice",
    "criteria": [
        {
            "key": "in_character",
            "description": "Sounds like Aria",
            "scale_min": 1,
            "scale_max": 5,
            "levels": {"1": "generic assistant", "5": "unmistakably Aria"},
        },
        {"key": "helpful", "description": "Answers the question", "scale_min": 0, "scale_max": 10, "levels": {}},
    ],
}


def test_guidance_accepts_exactly_the_answer_format():
    pattern = re.compile(judge_guidance(RUBRIC))
    good = "<rationale>Warm, but vague.</rationale>\n<scores>\n<in_character>4</in_character>\n<helpful>10</helpful>\n</scores>"
    assert pattern.fullmatch(good)
    assert not pattern.fullmatch(good.replace(">4<", ">6<"))  # out of scale
    assert not pattern.fullmatch(good.replace(">10<", ">11<"))
    assert not pattern.fullmatch(good.replace("<helpful>10</helpful>\n", ""))  # a criterion missing
    too_long = good.replace("Warm, but vague.", "x" * (RATIONALE_MAX_CHARS + 1))
    assert not pattern.fullmatch(too_long)


def test_max_tokens_covers_the_longest_allowed_answer_at_one_char_per_token():
    longest = (
        f"<rationale>{'x' * RATIONALE_MAX_CHARS}</rationale>\n<scores>\n"
        "<in_character>5</in_character>\n<helpful>10</helpful>\n</scores>"
    )
    assert re.fullmatch(judge_guidance(RUBRIC), longest)
    assert judge_max_tokens(RUBRIC) >= len(longest.encode())  # a byte-level tokenizer's worst case


@pytest.mark.parametrize("character", ["\U00049249", "é", "<", ">", "\t"])
def test_the_rationale_allows_only_one_byte_characters(character):
    # A 4-byte character may cost 4 byte-level tokens: 400 of them ran a random-weight judge out
    # of tokens before its scores. Only printable ASCII (and newlines) fit the token budget.
    answer = "<rationale>ok {}</rationale>\n<scores>\n<in_character>4</in_character>\n<helpful>1</helpful>\n</scores>"
    assert not re.fullmatch(judge_guidance(RUBRIC), answer.format(character))
    assert re.fullmatch(judge_guidance(RUBRIC), answer.format("fine,\nreally: 3/4 (mostly) = good!"))


def test_parse_reads_scores_and_rationale():
    raw = "<rationale> Good. </rationale>\n<scores>\n<in_character>3</in_character>\n<helpful>0</helpful>\n</scores>"
    result = parse_judgment(RUBRIC, raw)
    assert result.scores == {"in_character": 3, "helpful": 0}
    assert result.rationale == "Good."
    assert result.raw == raw


def test_parse_ignores_thinking_and_reads_json_answers():
    raw = '<think>the <helpful>1</helpful> tag here is musing</think>{"scores": {"in_character": 5, "helpful": 7}, "rationale": "ok"}'
    assert parse_judgment(RUBRIC, raw).scores == {"in_character": 5, "helpful": 7}
    fenced = '```json\n{"in_character": 2, "helpful": 3}\n```'
    assert parse_judgment(RUBRIC, fenced).scores == {"in_character": 2, "helpful": 3}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("<in_character>4</in_character>", "no score for 'helpful'"),
        ("<in_character>9</in_character><helpful>1</helpful>", "outside 1-5"),
        ('{"scores": {"in_character": "four", "helpful": 1}}', "not an integer"),
        ("I think it is a 4.", "no score for 'in_character'"),
        ("", "no score"),
    ],
)
def test_unparseable_answers_raise_with_the_raw_text(raw, message):
    with pytest.raises(JudgeOutputError, match=message) as caught:
        parse_judgment(RUBRIC, raw)
    assert caught.value.raw == raw


@pytest.mark.parametrize(
    ("rubric", "message"),
    [
        ({"criteria": []}, "no criteria"),
        ({}, "no criteria"),
        ("nope", "must be an object"),
        ({"criteria": [{"key": "Bad Key", "scale_min": 1, "scale_max": 5}]}, "slug"),
        ({"criteria": [{"key": "a", "scale_min": 5, "scale_max": 1}]}, "scale_min < scale_max"),
        ({"criteria": [{"key": "a", "scale_min": 1, "scale_max": 5}] * 2}, "repeated"),
    ],
)
def test_bad_rubrics_are_refused(rubric, message):
    with pytest.raises(InvalidRequest, match=message):
        check_rubric(rubric)


def test_judge_prompt_carries_rubric_levels_conversation_and_reply():
    messages = judge_messages(RUBRIC, [{"role": "user", "content": "Hi Aria"}], "Hello, traveller!")
    text = messages[-1]["content"]
    for needle in ("in_character (1-5)", "5: unmistakably Aria", "[user] Hi Aria", "Hello, traveller!", "<scores>"):
        assert needle in text


def test_the_trl_reward_function_scores_with_the_real_judge(triton_url):
    from inference.reward import make_reward_function

    reward = make_reward_function(RUBRIC, triton_url=triton_url)
    prompts = [[{"role": "user", "content": "Hi Aria"}], "Plain prompt"]
    completions = [[{"role": "assistant", "content": "Hello, traveller!"}], "A plain completion"]
    rewards = reward(prompts=prompts, completions=completions)
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)
    assert reward.__name__ == "judge_aria-voice"


def test_the_reward_function_gives_none_when_the_judge_fails():
    from inference.reward import make_reward_function
    from inference.triton_server import free_port

    reward = make_reward_function(RUBRIC, triton_url=f"127.0.0.1:{free_port()}", timeout_s=2)
    assert reward(prompts=["x"], completions=["y"]) == [None]
