"""Think-tag handling for Qwen3-style output: validate, strip, and extract the thinking.

A completion may open with `<think>...</think>` before the visible answer. When the
prompt itself already opened the think block (the chat template adds `<think>\\n`),
the completion starts mid-thought and carries only an orphaned `</think>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPEN = "<think>"
CLOSE = "</think>"
_TAG = re.compile(r"</?think>")

UNCLOSED = "unclosed_think_tag"
ORPHANED_CLOSE = "orphaned_close_tags"
NESTED = "nested_think_tags"
MULTIPLE = "multiple_think_blocks"
NOT_LEADING = "think_block_not_leading"
EMPTY_ANSWER = "empty_answer"


@dataclass(frozen=True)
class ThinkParse:
    answer: str
    thinking: str
    issues: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.issues


def validate(text: str, *, opened_in_prompt: bool = False) -> list[str]:
    """The problems with the think tags in `text`, as stable codes (empty list: fine)."""
    issues: list[str] = []
    depth = 1 if opened_in_prompt else 0
    blocks = 1 if opened_in_prompt else 0
    orphaned = 0
    for match in _TAG.finditer(text):
        if match.group() == OPEN:
            if depth:
                _add(issues, NESTED)
            else:
                blocks += 1
                if blocks > 1:
                    _add(issues, MULTIPLE)
                elif text[: match.start()].strip():
                    _add(issues, NOT_LEADING)
            depth += 1
        elif depth:
            depth -= 1
        else:
            orphaned += 1
    if depth:
        _add(issues, UNCLOSED)
    if orphaned:
        _add(issues, ORPHANED_CLOSE)
    return issues


def parse(text: str, *, opened_in_prompt: bool = False) -> ThinkParse:
    """Split a completion into (answer, thinking) and list its think-tag problems.

    The answer is everything after the last `</think>`; with an unclosed block there
    is no answer at all (the model never finished thinking).
    """
    issues = validate(text, opened_in_prompt=opened_in_prompt)
    last_close = text.rfind(CLOSE)
    if last_close == -1:
        if OPEN in text or opened_in_prompt:
            start = text.find(OPEN)
            thinking = text[start + len(OPEN) :] if start != -1 else text
            return ThinkParse(answer="", thinking=thinking.strip(), issues=issues)
        return ThinkParse(answer=text.strip(), thinking="", issues=issues)
    head, answer = text[:last_close], text[last_close + len(CLOSE) :]
    thinking = _TAG.sub("", head).strip()
    answer = answer.strip()
    if not answer and not issues:
        issues = [EMPTY_ANSWER]
    return ThinkParse(answer=answer, thinking=thinking, issues=issues)


def strip_thinking(text: str, *, opened_in_prompt: bool = False) -> str:
    """The visible answer with every think block (and orphaned tag) removed."""
    return parse(text, opened_in_prompt=opened_in_prompt).answer


def _add(issues: list[str], code: str) -> None:
    if code not in issues:
        issues.append(code)
