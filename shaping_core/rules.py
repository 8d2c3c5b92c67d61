"""Rule criteria: criteria of a rubric scored by a deterministic rule, never by a model.

A criterion with a `rule` (a JSON spec) is scored here, on its own scale, from the completion's
text; the judge model is asked only about the other criteria and reviewers are not asked at
all. Kinds (each spec is an object with `kind` and the fields below, nothing else):

- `regex`: `pattern`, `must` ("match", the default, or "not_match"): scale_max when the
  answer satisfies it (`re.search`), else scale_min.
- `length`: `unit` ("words" or "chars"), `min` and/or `max`, optional `falloff` (a count of
  units, default 0): scale_max inside [min, max]; outside, scale_min at once (falloff 0), or
  falling linearly to scale_min at `falloff` units outside the range, rounded.
- `think_valid`: scale_max when the completion's think tags are valid
  (`shaping_core.thinktags.parse`), else scale_min.
- `json_schema`: `schema`: scale_max when the whole answer parses as JSON and validates against
  the schema (the subset in `SCHEMA_KEYWORDS`; other keywords are refused), else scale_min.
- `keywords`: `include` and/or `avoid` (lists of words or phrases, matched case-insensitively
  as whole words): the share of include-words present and avoid-words absent, mapped onto the
  scale and rounded half up.
- `repetition`: optional `n` (words per phrase, 1 to 10, default 3), `max` (the share of
  repeated phrases allowed, 0 to 1, default 0) and `falloff` (default 0): the share of the
  answer's n-word phrases that repeat an earlier one (words compared without case or
  punctuation); scale_max up to `max`, then scale_min at once (falloff 0) or falling linearly
  to scale_min at `max + falloff`, rounded. An answer shorter than n words repeats nothing.

Every kind but `think_valid` scores the visible answer (`thinktags.strip_thinking`; a stored
generation's text is already that). Scores are integers inside [scale_min, scale_max].

Untrusted input on both sides: specs come from imports and the API, texts from a model. A
pattern is capped in length, compile-checked and refused when it nests unbounded repeats (the
classic catastrophic backtracking shape); at most `MAX_TEXT_CHARS` of a text are scanned.
Ambiguous alternations under a repeat (`(a|a)*`) are not detected: keep patterns plain.

Free of Django (like `scoring`): the TRL reward function and the pipelines' pure tasks use it.
One module (over 400 lines) so that each kind's spec check sits beside its scorer: a new kind is
one place to add, and `check_rule` and `score_rule` cannot drift apart.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from re import _parser as sre_parse  # the parsed pattern, to refuse nested unbounded repeats

from shaping_core import thinktags

KINDS = ("regex", "length", "think_valid", "json_schema", "keywords", "repetition")
MAX_PATTERN_CHARS = 500
MAX_TEXT_CHARS = 20_000
MAX_WORDS = 100
MAX_WORD_CHARS = 100
MAX_SCHEMA_DEPTH = 16
SCHEMA_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
SCHEMA_KEYWORDS = (
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "title",
    "description",
    "$schema",
)
_FIELDS = {
    "regex": ({"pattern"}, {"must"}),
    "length": ({"unit"}, {"min", "max", "falloff"}),
    "think_valid": (set(), set()),
    "json_schema": ({"schema"}, set()),
    "keywords": (set(), {"include", "avoid"}),
    "repetition": (set(), {"n", "max", "falloff"}),
}
MAX_NGRAM = 10


class RuleInvalid(ValueError):
    """A rule spec that cannot be used; `field` names the part that is wrong ("pattern", "max")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


# --- checking a spec ----------------------------------------------------------------


def check_rule(spec: object) -> None:
    """Refuse a spec that is not one of the kinds above, with a message naming the field."""
    if not isinstance(spec, Mapping):
        raise RuleInvalid("", "a rule must be an object with a kind")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise RuleInvalid("kind", f"{kind!r} is not a rule kind; expected one of {', '.join(KINDS)}")
    required, optional = _FIELDS[kind]
    for name in sorted(required - set(spec)):
        raise RuleInvalid(name, f"field required for a {kind} rule")
    for name in sorted(set(spec) - required - optional - {"kind"}):
        raise RuleInvalid(name, f"unknown field for a {kind} rule")
    if kind == "regex":
        _check_regex(spec)
    elif kind == "length":
        _check_length(spec)
    elif kind == "json_schema":
        _check_schema(spec["schema"], "schema", 0)
    elif kind == "keywords":
        _check_keywords(spec)
    elif kind == "repetition":
        _check_repetition(spec)


def _check_regex(spec: Mapping) -> None:
    pattern = spec["pattern"]
    if not isinstance(pattern, str) or not pattern:
        raise RuleInvalid("pattern", "must be a non-empty string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RuleInvalid("pattern", f"is {len(pattern)} characters; at most {MAX_PATTERN_CHARS}")
    if spec.get("must", "match") not in ("match", "not_match"):
        raise RuleInvalid("must", "must be 'match' or 'not_match'")
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise RuleInvalid("pattern", f"does not compile: {exc}") from None
    if _nested_unbounded(parsed, inside=False):
        raise RuleInvalid(
            "pattern", "nests an unbounded repeat inside another (like (a+)+): it can take exponential time"
        )
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise RuleInvalid("pattern", f"does not compile: {exc}") from None


_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)} - {None}


def _nested_unbounded(items, *, inside: bool) -> bool:
    """Whether an unbounded repeat sits inside another unbounded repeat."""
    for op, arg in items:
        if op in _REPEATS:
            _low, high, body = arg
            unbounded = high == sre_parse.MAXREPEAT
            if (unbounded and inside) or _nested_unbounded(body, inside=inside or unbounded):
                return True
        elif any(_nested_unbounded(sub, inside=inside) for sub in _subpatterns(op, arg)):
            return True
    return False


def _subpatterns(op, arg) -> list:
    """The parsed subpatterns inside a group, an alternation, a lookaround or an atomic group."""
    if op == sre_parse.SUBPATTERN:
        return [arg[-1]]
    if op == sre_parse.BRANCH:
        return list(arg[1])
    if op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
        return [arg[1]]
    if op == getattr(sre_parse, "ATOMIC_GROUP", None):
        return [arg]
    return []


def _check_length(spec: Mapping) -> None:
    if spec["unit"] not in ("words", "chars"):
        raise RuleInvalid("unit", "must be 'words' or 'chars'")
    if "min" not in spec and "max" not in spec:
        raise RuleInvalid("min", "a length rule needs min, max or both")
    for name in ("min", "max", "falloff"):
        if name in spec and not _count(spec[name]):
            raise RuleInvalid(name, "must be a whole number, 0 or more")
    if "min" in spec and "max" in spec and spec["min"] > spec["max"]:
        raise RuleInvalid("max", f"max ({spec['max']}) is below min ({spec['min']})")


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_keywords(spec: Mapping) -> None:
    total = 0
    for name in ("include", "avoid"):
        words = spec.get(name, [])
        if not isinstance(words, list):
            raise RuleInvalid(name, "must be a list of words")
        if len(words) > MAX_WORDS:
            raise RuleInvalid(name, f"has {len(words)} words; at most {MAX_WORDS}")
        for i, word in enumerate(words):
            if not isinstance(word, str) or not word.strip() or len(word) > MAX_WORD_CHARS:
                raise RuleInvalid(f"{name}[{i}]", f"must be a non-blank string of at most {MAX_WORD_CHARS} characters")
        total += len(words)
    if not total:
        raise RuleInvalid("include", "a keywords rule needs at least one word in include or avoid")


def _check_repetition(spec: Mapping) -> None:
    n = spec.get("n", 3)
    if not _count(n) or not 1 <= n <= MAX_NGRAM:
        raise RuleInvalid("n", f"must be a whole number from 1 to {MAX_NGRAM}")
    for name in ("max", "falloff"):
        if name in spec and not (_number(spec[name]) and 0 <= spec[name] <= 1):
            raise RuleInvalid(name, "must be a share, from 0 to 1")


def _check_schema(schema: object, path: str, depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise RuleInvalid(path, f"nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if not isinstance(schema, Mapping):
        raise RuleInvalid(path, "must be an object (a JSON schema)")
    for key in schema:
        if key not in SCHEMA_KEYWORDS:
            raise RuleInvalid(f"{path}.{key}", f"unsupported keyword; supported: {', '.join(SCHEMA_KEYWORDS)}")
    kind = schema.get("type")
    types = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if (not types and "type" in schema) or any(t not in SCHEMA_TYPES for t in types):
        raise RuleInvalid(f"{path}.type", f"must be one of {', '.join(SCHEMA_TYPES)} (or a list of them)")
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise RuleInvalid(f"{path}.properties", "must be an object of schemas")
    for name, sub in properties.items():
        _check_schema(sub, f"{path}.properties.{name}", depth + 1)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise RuleInvalid(f"{path}.required", "must be a list of property names")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        _check_schema(extra, f"{path}.additionalProperties", depth + 1)
    if "items" in schema:
        _check_schema(schema["items"], f"{path}.items", depth + 1)
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise RuleInvalid(f"{path}.enum", "must be a non-empty list")
    for name in ("minLength", "maxLength", "minItems", "maxItems"):
        if name in schema and not _count(schema[name]):
            raise RuleInvalid(f"{path}.{name}", "must be a whole number, 0 or more")
    for name in ("minimum", "maximum"):
        if name in schema and not _number(schema[name]):
            raise RuleInvalid(f"{path}.{name}", "must be a number")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- scoring ------------------------------------------------------------------------


def score_rule(spec: Mapping, text: str, scale_min: int, scale_max: int, *, think_valid: bool | None = None) -> int:
    """The rule's score for `text` (the completion), an integer in [scale_min, scale_max].

    `think_valid`, when given, is a verdict on the think tags made already (a stored
    generation's, parsed knowing whether the prompt opened the think block); without it the
    think_valid kind parses `text`."""
    check_rule(spec)
    kind = spec["kind"]
    if kind == "think_valid":
        valid = thinktags.parse(text).valid if think_valid is None else think_valid
        return scale_max if valid else scale_min
    answer = thinktags.strip_thinking(text)
    if kind == "regex":
        found = re.search(spec["pattern"], answer[:MAX_TEXT_CHARS]) is not None
        return scale_max if found == (spec.get("must", "match") == "match") else scale_min
    if kind == "length":
        return _length_score(spec, answer, scale_min, scale_max)
    if kind == "json_schema":
        return scale_max if _json_valid(spec["schema"], answer) else scale_min
    if kind == "repetition":
        return _repetition_score(spec, answer, scale_min, scale_max)
    return _keywords_score(spec, answer, scale_min, scale_max)


def _on_scale(share: float, scale_min: int, scale_max: int) -> int:
    """A share in 0..1 onto the integer scale, rounded half up (never banker's rounding)."""
    share = min(1.0, max(0.0, share))
    return scale_min + math.floor(share * (scale_max - scale_min) + 0.5)


def _length_score(spec: Mapping, answer: str, scale_min: int, scale_max: int) -> int:
    size = len(answer.split()) if spec["unit"] == "words" else len(answer)
    low, high = spec.get("min", 0), spec.get("max")
    outside = low - size if size < low else (size - high if high is not None and size > high else 0)
    if not outside:
        return scale_max
    falloff = spec.get("falloff", 0)
    if not falloff:
        return scale_min
    return _on_scale(1 - outside / falloff, scale_min, scale_max)


def repeated_share(text: str, n: int = 3) -> float:
    """The share of the text's n-word phrases that repeat an earlier phrase (0 when it has none)."""
    words = [w for w in (re.sub(r"[^\w']+", "", w).lower() for w in text[:MAX_TEXT_CHARS].split()) if w]
    phrases = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not phrases:
        return 0.0
    return 1 - len(set(phrases)) / len(phrases)


def _repetition_score(spec: Mapping, answer: str, scale_min: int, scale_max: int) -> int:
    over = repeated_share(answer, spec.get("n", 3)) - spec.get("max", 0)
    if over <= 0:
        return scale_max
    falloff = spec.get("falloff", 0)
    if not falloff:
        return scale_min
    return _on_scale(1 - over / falloff, scale_min, scale_max)


def _keywords_score(spec: Mapping, answer: str, scale_min: int, scale_max: int) -> int:
    scanned = answer[:MAX_TEXT_CHARS]
    include, avoid = spec.get("include", []), spec.get("avoid", [])
    hits = sum(_has_word(scanned, w) for w in include) + sum(not _has_word(scanned, w) for w in avoid)
    return _on_scale(hits / (len(include) + len(avoid)), scale_min, scale_max)


def _has_word(text: str, word: str) -> bool:
    # Whole words, any case; the word is escaped, so it is never a pattern.
    return re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text, re.IGNORECASE) is not None


def _json_valid(schema: Mapping, answer: str) -> bool:
    if len(answer) > MAX_TEXT_CHARS:
        return False
    try:
        value = json.loads(answer)
    except (ValueError, RecursionError):
        return False
    return _matches(schema, value)


def _matches(schema: Mapping, value: object) -> bool:
    kind = schema.get("type")
    if kind is not None and not any(_is_type(value, t) for t in (kind if isinstance(kind, list) else [kind])):
        return False
    if "const" in schema and not _same(value, schema["const"]):
        return False
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        return False
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
        return False
    if _number(value) and not schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf):
        return False
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            return False
        if "items" in schema and not all(_matches(schema["items"], item) for item in value):
            return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if any(name not in value for name in schema.get("required", [])):
            return False
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub = properties.get(name, extra)
            if sub is False or (isinstance(sub, Mapping) and not _matches(sub, item)):
                return False
    return True


def _is_type(value: object, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return _number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return isinstance(value, {"object": dict, "array": list, "string": str}[kind])


def _same(a: object, b: object) -> bool:
    # JSON equality: true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


# --- a rubric's rule criteria -------------------------------------------------------


def _get(criterion, name: str):
    # A criterion is a rubric dict's entry or a `Criterion` row.
    return criterion.get(name) if isinstance(criterion, Mapping) else getattr(criterion, name)


def is_rule(criterion) -> bool:
    return _get(criterion, "rule") is not None


def rule_scores(criteria: Iterable, text: str, *, think_valid: bool | None = None) -> dict[str, int]:
    """Each rule criterion's score for `text`, by key (no entry for the other criteria)."""
    return {
        _get(c, "key"): score_rule(
            _get(c, "rule"), text, _get(c, "scale_min"), _get(c, "scale_max"), think_valid=think_valid
        )
        for c in criteria
        if is_rule(c)
    }


def with_rule_scores(
    criteria: Iterable, scores: Mapping[str, int], text: str, *, think_valid: bool | None = None
) -> dict[str, int]:
    """`scores` (the judge's or a reviewer's, for the other criteria) with every rule criterion
    scored by its rule, in the rubric's order. A score given for a rule criterion is replaced:
    the rule decides it. Keys that are no criterion are kept, for `scoring.check` to refuse."""
    criteria = list(criteria)
    ruled = rule_scores(criteria, text, think_valid=think_valid)
    merged = {}
    for c in criteria:
        key = _get(c, "key")
        if key in ruled or key in scores:
            merged[key] = ruled[key] if key in ruled else scores[key]
    merged.update({k: v for k, v in scores.items() if k not in merged})
    return merged


def model_rubric(rubric: Mapping) -> dict | None:
    """The rubric as the judge model should see it: only the criteria without a rule
    (None when every criterion is a rule: then no model is asked at all)."""
    criteria = [c for c in rubric.get("criteria", []) if not is_rule(c)]
    return {**rubric, "criteria": criteria} if criteria else None
