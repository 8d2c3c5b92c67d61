"""Validated shapes of what comes in from files and the API (pydantic).

One definition serves the importers, the admin import form and the JSON API,
so a field means the same thing everywhere and errors name the same field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shaping_core import rules, strict

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$", max_length=80)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class CharacterIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    slug: Slug
    persona: NonEmpty
    traits: list[str] = Field(default_factory=list)
    backstory: str = ""


class CriterionIn(Strict):
    key: Slug
    description: NonEmpty
    scale_min: int = 1
    scale_max: int = 5
    levels: dict[str, str] = Field(default_factory=dict)
    weight: Annotated[float, Field(ge=0)] = 1.0
    # A rule scores the criterion without a model (shaping_core/rules.py); None: the judge and reviewers do.
    rule: dict | None = None

    @field_validator("rule")
    @classmethod
    def _rule(cls, rule: dict | None) -> dict | None:
        if rule is not None:
            try:
                rules.check_rule(rule)
            except rules.RuleInvalid as exc:
                raise ValueError(str(exc)) from None
        return rule

    @model_validator(mode="after")
    def _scale(self) -> CriterionIn:
        if self.scale_min >= self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be below scale_max ({self.scale_max})")
        for level in self.levels:
            score = strict.whole_number(level.removeprefix("-"))
            if score is None or not self.scale_min <= (-score if level.startswith("-") else score) <= self.scale_max:
                raise ValueError(f"levels: {level!r} is not a score in {self.scale_min}..{self.scale_max}")
        return self


class RubricIn(Strict):
    slug: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    description: str = ""
    criteria: Annotated[list[CriterionIn], Field(min_length=1)]

    @field_validator("criteria")
    @classmethod
    def _unique_keys(cls, criteria: list[CriterionIn]) -> list[CriterionIn]:
        seen: set[str] = set()
        for c in criteria:
            if c.key in seen:
                raise ValueError(f"duplicate criterion key {c.key!r}")
            seen.add(c.key)
        return criteria


class PromptIn(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    messages: Annotated[list[Message], Field(min_length=1)]
    metadata: dict = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be from the user")
        return messages


class PromptSetIn(Strict):
    slug: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    description: str = ""
    prompts: list[PromptIn] = Field(default_factory=list)


class JudgeScoresIn(Strict):
    """Scores for one completion from an external judge, keyed by criterion."""

    scores: dict[str, int]
    rationale: str = ""


class GroupIn(Strict):
    """Completions made elsewhere for one prompt, imported as a GRPO group for review."""

    character: Slug
    prompt_set: Slug
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    completions: Annotated[list[str], Field(min_length=1, max_length=64)]
    model: Annotated[str, StringConstraints(min_length=1, max_length=120)] = "external"
    rubric: Slug | None = None
    judge_scores: list[JudgeScoresIn] | None = None

    @model_validator(mode="after")
    def _scores_match(self) -> GroupIn:
        if self.judge_scores is not None:
            if self.rubric is None:
                raise ValueError("judge_scores need a rubric")
            if len(self.judge_scores) != len(self.completions):
                raise ValueError(
                    f"judge_scores has {len(self.judge_scores)} entries for {len(self.completions)} completions"
                )
        return self
