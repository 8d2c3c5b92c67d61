"""Which groups a dataset version selects: the filter (validated, recorded with the version)
and the rubric whose weights give the rewards."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Q

from labelling.models import (
    Group,
    Prompt,
    Rubric,
)
from shaping_core.weights import GENERATOR_MODEL


@dataclass(frozen=True)
class DatasetFilter:
    character: str | None = None
    rubric: str | None = None
    rubric_version: int | None = None
    runs: tuple[int, ...] = ()
    model_version: int | None = None  # a Producer id (one setup: backend, sampling, version)
    generator_version: int | None = None  # a generator version's number: its completions, any setup
    created_after: str | None = None
    created_before: str | None = None
    min_human_reviews: int = 0
    exclude_flagged: bool = True
    min_margin: float = 0.1  # pairs: smallest reward gap that makes a pair
    # The share of prompts held out of the version (by a hash of the prompt: the same prompts
    # whatever else the filter selects, and on every rebuild): training never sees them, and an
    # evaluation of a version trained on it uses them by default.
    held_out: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> DatasetFilter:
        if not isinstance(data, dict):
            raise ValidationError({"filter": "must be an object"})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValidationError({"filter": f"unknown field(s): {', '.join(sorted(unknown))}"})
        values = dict(data)
        checks = {
            "character": (str, type(None)),
            "rubric": (str, type(None)),
            "rubric_version": (int, type(None)),
            "model_version": (int, type(None)),
            "generator_version": (int, type(None)),
            "created_after": (str, type(None)),
            "created_before": (str, type(None)),
            "min_human_reviews": (int,),
            "exclude_flagged": (bool,),
            "min_margin": (int, float),
            "held_out": (int, float),
        }
        for name, types in checks.items():
            if name in values and (
                not isinstance(values[name], types) or (isinstance(values[name], bool) and bool not in types)
            ):
                raise ValidationError({name: f"wrong type: {type(values[name]).__name__}"})
        for name in ("rubric_version", "model_version", "generator_version", "min_human_reviews"):
            if isinstance(values.get(name), int) and not 0 <= values[name] < 2**63:
                raise ValidationError({name: "out of range"})
        runs = values.get("runs", ())
        if not isinstance(runs, list | tuple) or not all(
            isinstance(r, int) and not isinstance(r, bool) and 0 < r < 2**63 for r in runs
        ):
            raise ValidationError({"runs": "must be a list of run ids"})
        values["runs"] = tuple(sorted(set(runs)))
        for name in ("created_after", "created_before"):
            if values.get(name):
                try:
                    datetime.fromisoformat(values[name])
                except ValueError:
                    raise ValidationError({name: "must be an ISO date or datetime"}) from None
        if not 0 <= values.get("held_out", 0) < 1:
            raise ValidationError({"held_out": "a share from 0 (none) up to, not including, 1"})
        if values.get("min_human_reviews", 0) < 0 or values.get("min_margin", 0.1) < 0:
            raise ValidationError({"filter": "min_human_reviews and min_margin must not be negative"})
        return cls(**values)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def rubric_for(f: DatasetFilter) -> Rubric | None:
    if not f.rubric:
        return None
    rubrics = Rubric.objects.filter(slug=f.rubric)
    rubric = (
        rubrics.filter(version=f.rubric_version).first() if f.rubric_version else rubrics.order_by("-version").first()
    )
    if rubric is None:
        raise ValidationError(
            {"rubric": f"no rubric {f.rubric!r}" + (f" v{f.rubric_version}" if f.rubric_version else "")}
        )
    return rubric


def prompt_bucket(prompt_set_slug: str, external_id: str) -> float:
    """Where a prompt falls in [0, 1): a hash of its set and id, so a split never moves."""
    digest = hashlib.sha256(f"{prompt_set_slug}/{external_id}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def held_out_prompt_ids(f: DatasetFilter, groups) -> list[int]:
    """The prompts of `groups` that the filter's held-out share keeps out."""
    if not f.held_out:
        return []
    prompts = Prompt.objects.filter(groups__in=groups).distinct().values_list("pk", "prompt_set__slug", "external_id")
    return [pk for pk, slug, external_id in prompts if prompt_bucket(slug, external_id) < f.held_out]


def groups_for(f: DatasetFilter, *, held_out: bool = True):
    """The groups the filter selects; with `held_out` False, the held-out prompts' groups too."""
    groups = _selected(f)
    if f.held_out and held_out:
        groups = groups.exclude(prompt_id__in=held_out_prompt_ids(f, groups))
    return groups


def _selected(f: DatasetFilter):
    q = Q()
    if f.character:
        q &= Q(character__slug=f.character)
    if f.runs:
        q &= Q(run_id__in=f.runs)
    if f.model_version:
        q &= Q(generations__producer_id=f.model_version)
    if f.generator_version:
        q &= Q(
            generations__producer__generator__model_name=GENERATOR_MODEL,
            generations__producer__generator__number=f.generator_version,
        )
    if f.created_after:
        q &= Q(created_at__gte=f.created_after)
    if f.created_before:
        q &= Q(created_at__lt=f.created_before)
    if f.min_human_reviews:
        q &= Q(review_count__gte=f.min_human_reviews)
    return Group.objects.filter(q).distinct().order_by("id")
