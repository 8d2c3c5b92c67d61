"""The LLM judge: its prompt, the guidance that makes its answer always parse, and the parser.

Free of Django: Triton's judge model.py, the in-process backend and the tests
share it. The answer format is a bounded rationale, then one tag per criterion (rule criteria,
scored without a model, are left out of all of it: `model_criteria`):

    <rationale>Stays in character, but the second sentence drifts.</rationale>
    <scores>
    <in_character>4</in_character>
    <helpfulness>3</helpfulness>
    </scores>

With guidance the runtime can only produce this shape with in-scale integers.
The parser also reads a JSON object ({"scores": {...}, "rationale": "..."}), for
judges served elsewhere without guidance, and refuses anything else with
`JudgeOutputError` carrying the raw text, so a bad answer is recorded, not lost.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from inference.errors import InvalidRequest, JudgeOutputError
from shaping_core import strict

RATIONALE_MAX_CHARS = 400
# The rationale's characters under guidance: printable ASCII and newlines, never < or >.
# One byte each, so at most one token each whatever the tokenizer, and judge_max_tokens
# always leaves room for the scores (a 4-byte character could take 4 byte-level tokens:
# 400 of them ran a random-weight judge out of tokens before it reached its scores).
RATIONALE_CHARS = r"[\x20-\x3b=\x3f-\x7e\n]"
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

SYSTEM_PROMPT = (
    "You are a strict, fair judge of replies written by a role-played character. "
    "Score the reply against each criterion of the rubric, using the criterion's scale "
    "and level descriptions. First give a short rationale, then the scores, exactly in "
    "the format asked for."
)


@dataclass
class JudgeResult:
    scores: dict[str, int]
    rationale: str
    raw: str

    def as_dict(self) -> dict:
        return {"scores": self.scores, "rationale": self.rationale, "raw": self.raw}


def check_rubric(rubric) -> list[dict]:
    """The rubric's criteria, or InvalidRequest saying what is wrong with it."""
    if not isinstance(rubric, dict):
        raise InvalidRequest("rubric must be an object with criteria")
    criteria = rubric.get("criteria")
    if not isinstance(criteria, list) or not criteria:
        raise InvalidRequest("rubric has no criteria")
    seen = set()
    for i, c in enumerate(criteria):
        if not isinstance(c, dict):
            raise InvalidRequest(f"rubric.criteria[{i}] must be an object")
        key, low, high = c.get("key"), c.get("scale_min"), c.get("scale_max")
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise InvalidRequest(f"rubric.criteria[{i}].key must be a slug (a-z, 0-9, _ and -)")
        if key in seen:
            raise InvalidRequest(f"rubric.criteria[{i}].key {key!r} is repeated")
        seen.add(key)
        if not (isinstance(low, int) and isinstance(high, int) and low < high <= low + 100):
            raise InvalidRequest(f"rubric.criteria[{i}] needs integer scale_min < scale_max (at most 100 apart)")
    return criteria


def model_criteria(rubric) -> list[dict]:
    """The criteria the judge model scores: those without a `rule`. Rule criteria are scored
    without a model (shaping_core/rules.py, by the caller); the model is never asked about them."""
    criteria = [c for c in check_rubric(rubric) if c.get("rule") is None]
    if not criteria:
        raise InvalidRequest("rubric has no criteria for the judge model: every criterion is a rule")
    return criteria


def judge_messages(rubric: dict, messages: list[dict], completion: str, *, answer: str = "tags") -> list[dict]:
    """The chat the judge model reads: the rubric, the conversation, the reply to score. The answer
    format asked for is the tags below, or with `answer="json"` the object `judge_json_schema`
    describes (for a judge guided by a JSON schema)."""
    criteria = model_criteria(rubric)
    lines = [f"Rubric: {rubric.get('name') or rubric.get('slug', '')}".rstrip()]
    if rubric.get("description"):
        lines.append(rubric["description"])
    for c in criteria:
        lines.append(f"\n## {c['key']} ({c['scale_min']}-{c['scale_max']}): {c.get('description', '')}")
        for level, text in sorted((c.get("levels") or {}).items(), key=lambda kv: _int_or(kv[0])):
            lines.append(f"- {level}: {text}")
    conversation = "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in messages)
    answer_format = "\n".join(
        ["<rationale>one short paragraph</rationale>", "<scores>"]
        + [f"<{c['key']}>{c['scale_min']}-{c['scale_max']}</{c['key']}>" for c in criteria]
        + ["</scores>"]
    )
    if answer == "json":
        scores = ", ".join(f'"{c["key"]}": {c["scale_min"]}-{c["scale_max"]}' for c in criteria)
        answer_format = (
            f'One JSON object: {{"rationale": "one short paragraph, at most {RATIONALE_MAX_CHARS} characters", '
            f'"scores": {{{scores}}}}}'
        )
    user = (
        "\n".join(lines)
        + f"\n\n# Conversation\n{conversation}\n\n# Reply to score\n{completion}\n\n"
        + f"# Answer format\n{answer_format}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def judge_prompt_sha256(rubric: dict) -> str:
    """A fingerprint of everything the judge is told for this rubric: the system prompt, the
    template of its message (with placeholders for the conversation and the reply), the guidance
    and the token budget. An evaluation records it: a change to any of them shows. "" for a
    rubric of rule criteria only: the judge is never asked."""
    if all(c.get("rule") is not None for c in rubric.get("criteria", [])):
        return ""
    payload = {
        "messages": judge_messages(rubric, [{"role": "user", "content": "{conversation}"}], "{reply}"),
        "guidance": judge_guidance(rubric),
        "max_tokens": judge_max_tokens(rubric),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def judge_guidance(rubric: dict) -> str:
    """A regex only answers in the format, with in-scale integers, can match."""
    criteria = model_criteria(rubric)
    scores = "".join(
        f"<{re.escape(c['key'])}>({_alternation(c['scale_min'], c['scale_max'])})</{re.escape(c['key'])}>\\n"
        for c in criteria
    )
    return f"<rationale>{RATIONALE_CHARS}{{1,{RATIONALE_MAX_CHARS}}}</rationale>\\n<scores>\\n{scores}</scores>"


def judge_json_schema(rubric: dict) -> dict:
    """The JSON schema of a judge's answer as an object: a rationale and an in-scale integer per
    criterion (the parser reads it as it reads the tags)."""
    criteria = model_criteria(rubric)
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string"},
            "scores": {
                "type": "object",
                "properties": {
                    c["key"]: {"type": "integer", "enum": list(range(c["scale_min"], c["scale_max"] + 1))}
                    for c in criteria
                },
                "required": [c["key"] for c in criteria],
                "additionalProperties": False,
            },
        },
        "required": ["rationale", "scores"],
        "additionalProperties": False,
    }


def judge_max_tokens(rubric: dict) -> int:
    """Enough tokens for the longest answer the guidance allows, even one byte (one ASCII
    character: see RATIONALE_CHARS) per token."""
    criteria = model_criteria(rubric)
    return RATIONALE_MAX_CHARS + 40 + sum(2 * len(c["key"]) + 12 for c in criteria)


def parse_judgment(rubric: dict, raw: str) -> JudgeResult:
    """Scores for every criterion, in scale, or JudgeOutputError naming what is wrong."""
    criteria = model_criteria(rubric)
    text = _strip_thinking(raw or "")
    data = _as_json(text)
    if data is not None:
        found, rationale = data.get("scores", data), str(data.get("rationale", ""))
    else:
        found = {}
        for c in criteria:
            match = re.search(rf"<{re.escape(c['key'])}>\s*(-?\d+)\s*</{re.escape(c['key'])}>", text)
            if match:
                found[c["key"]] = match.group(1)
        match = re.search(r"<rationale>(.*?)</rationale>", text, re.S)
        rationale = match.group(1).strip() if match else ""
    scores = {}
    for c in criteria:
        key = c["key"]
        if key not in found:
            raise JudgeOutputError(f"the judge gave no score for {key!r}", raw)
        try:
            value = int(str(found[key]).strip())
        except ValueError:
            raise JudgeOutputError(f"the judge's score for {key!r} is not an integer: {found[key]!r}", raw) from None
        if not c["scale_min"] <= value <= c["scale_max"]:
            raise JudgeOutputError(
                f"the judge's score for {key!r} is {value}, outside {c['scale_min']}-{c['scale_max']}", raw
            )
        scores[key] = value
    return JudgeResult(scores=scores, rationale=rationale, raw=raw)


def _alternation(low: int, high: int) -> str:
    return "|".join(str(v) for v in range(high, low - 1, -1))  # longest first: 10 before 1


def _int_or(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _strip_thinking(text: str) -> str:
    return text.rsplit("</think>", 1)[-1] if "</think>" in text else text


def _as_json(text: str) -> dict | None:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = strict.json_loads(stripped)
    except ValueError:  # not JSON, NaN or an infinity, or nested past strict.MAX_DEPTH
        return None
    if not isinstance(data, dict):
        return None
    if "scores" in data and not isinstance(data["scores"], dict):
        return None
    return data


def run_judge(
    engine, rubric: dict, messages: list[dict], completion: str, seed: int | None = None, *, client="", priority=""
) -> JudgeResult:
    """Score one completion with `engine` (an inference.engine.Engine), decoding under guidance
    in the engine's batch with whatever else it is judging (`client` and `priority`: the order)."""
    from inference.engine import SamplingParams, check_messages

    check_messages(messages)
    if not isinstance(completion, str):
        raise InvalidRequest("completion must be a string")
    params = SamplingParams(
        max_tokens=judge_max_tokens(rubric),
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        seed=seed,
        guidance_type="regex",
        guidance=judge_guidance(rubric),
    )
    (answer,) = engine.generate(
        messages=judge_messages(rubric, messages, completion), params=params, client=client, priority=priority
    )
    return parse_judgment(rubric, answer.text)
