"""Think-tag validation, stripping and extraction."""

import pytest

from shaping_core import thinktags as tt


@pytest.mark.parametrize(
    ("text", "opened", "answer", "thinking", "issues"),
    [
        ("plain answer", False, "plain answer", "", []),
        ("<think>plan it</think>\n\nThe answer.", False, "The answer.", "plan it", []),
        ("<think>\n\n</think>\n\nNo thoughts.", False, "No thoughts.", "", []),
        ("plan it</think>The answer.", True, "The answer.", "plan it", []),
        ("plan it</think>The answer.", False, "The answer.", "plan it", [tt.ORPHANED_CLOSE]),
        ("<think>never done", False, "", "never done", [tt.UNCLOSED]),
        ("still thinking", True, "", "still thinking", [tt.UNCLOSED]),
        ("<think>a</think>mid<think>b</think>end", False, "end", "amidb", [tt.MULTIPLE]),
        ("<think>a<think>b</think></think>end", False, "end", "ab", [tt.NESTED]),
        ("Hi <think>late</think>answer", False, "answer", "Hi late", [tt.NOT_LEADING]),
        ("<think>only thoughts</think>", False, "", "only thoughts", [tt.EMPTY_ANSWER]),
        ("a</think>b</think>c", False, "c", "ab", [tt.ORPHANED_CLOSE]),
    ],
)
def test_parse(text, opened, answer, thinking, issues):
    parsed = tt.parse(text, opened_in_prompt=opened)
    assert (parsed.answer, parsed.thinking, parsed.issues) == (answer, thinking, issues)
    assert parsed.valid is (not issues)


def test_strip_returns_only_the_answer():
    assert tt.strip_thinking("<think>x</think> Hello") == "Hello"
    assert tt.strip_thinking("x</think>Hello", opened_in_prompt=True) == "Hello"


def test_validate_reports_each_problem_once():
    assert tt.validate("</think></think><think>") == [
        tt.NOT_LEADING,
        tt.UNCLOSED,
        tt.ORPHANED_CLOSE,
    ]
