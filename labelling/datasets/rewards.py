"""Rewards and group-relative advantages, read from the database a chunk of groups at a time.

Reward policy: a completion's reward is the weighted score (`shaping_core.scoring`) of its
human judgments (their mean) when it has any, else of the judge's latest successful judgment;
a completion with neither has no reward and is left out of rewarded formats. Advantages are
(r - mean) / (std + eps) within a group, over its original completions.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection

from labelling.datasets.filters import DatasetFilter, groups_for
from labelling.models import (
    Character,
    Criterion,
    CriterionScore,
    Generation,
    Group,
    Judgment,
    Prompt,
    Rubric,
)
from shaping_core import scoring
from shaping_core.calibration import calibrated_scores

EPS = 1e-6


CHUNK = 500


REWARD_POLICY = {
    "reward": "weighted mean of criterion scores rescaled to 0..1 (rubric weights)",
    "precedence": "human judgments (mean) over the judge's latest successful judgment",
    "advantage": "(r - mean) / (std + 1e-6) within each group, population std",
}


@dataclass(slots=True)
class Gen:
    """A completion as the exports read it: plain values, not an ORM object (a version can
    hold millions)."""

    pk: int
    group_id: int
    index: int
    revision: int
    parent_id: int | None
    source: str
    messages: list
    text: str
    raw_text: str
    think_valid: bool


GEN_FIELDS = list(Gen.__dataclass_fields__)  # values_list() order = Gen(*values)


@dataclass(slots=True)
class GroupRow:
    pk: int
    character: Character | None
    prompt_messages: list


@dataclass
class Completion:
    generation: Gen
    reward: float | None
    source: str | None  # "human" | "judge" | None
    scores: dict[str, float] = field(default_factory=dict)
    advantage: float | None = None
    flagged: bool = False


def _reward(criteria: list[Criterion], scores: dict[str, int]) -> float:
    # Without a rubric (a prompts-only export) there is no reward to compute: 0.0 stands in.
    return scoring.overall(criteria, scores) if criteria else 0.0


CALIBRATED_POLICY = (
    "one scale per group: the reviewers' scores when they scored every original completion of the "
    "group, else the judge's latest scores mapped onto the reviewers' scale (calibration) for every one"
)


def _humans_everywhere(generations: list[Gen], judgments: dict[int, list[tuple]]) -> bool:
    originals = [g for g in generations if g.revision == 0]
    return bool(originals) and all(
        any(j[0] == Judgment.Source.HUMAN for j in judgments.get(g.pk, ())) for g in originals
    )


def score_group(
    generations: list[Gen],
    judgments: dict[int, list[tuple]],
    criteria: list[Criterion],
    calibration: dict | None = None,
) -> list[Completion]:
    """The group's completions (originals and revisions) with rewards and advantages.

    `judgments` maps a generation id to its successful judgments against the rubric, in id
    order, each as (source, flagged, {criterion key: score}). With `calibration` (criterion key
    -> table, `shaping_core.calibration`) no group mixes human and judge scores
    (CALIBRATED_POLICY): a group the reviewers scored throughout is rewarded from their scores,
    any other from the calibrated judge's.
    """
    judge_only = calibration is not None and not _humans_everywhere(generations, judgments)
    out = []
    for generation in generations:
        mine = judgments.get(generation.pk, ())
        humans = [j for j in mine if j[0] == Judgment.Source.HUMAN]
        judges = [j for j in mine if j[0] == Judgment.Source.JUDGE]
        flagged = any(j[1] for j in humans)
        if judge_only:
            chosen, source = (judges[-1:], "judge") if judges else ([], None)
        else:
            chosen, source = (humans, "human") if humans else ((judges[-1:], "judge") if judges else ([], None))
        if not chosen:
            out.append(Completion(generation, None, None, flagged=flagged))
            continue
        if judge_only:
            scores = chosen[0][2]
            reward = scoring.overall(criteria, scores, calibration) if criteria else 0.0
            means = {k: round(v, 6) for k, v in sorted(calibrated_scores(scores, calibration).items())}
        elif len(chosen) == 1:  # the common case, without the averaging
            scores = chosen[0][2]
            reward, means = _reward(criteria, scores), {k: float(scores[k]) for k in sorted(scores)}
        else:
            per_key = defaultdict(list)
            for _, _, scores in chosen:
                for key, value in scores.items():
                    per_key[key].append(value)
            reward = statistics.fmean(_reward(criteria, scores) for _, _, scores in chosen)
            means = {k: round(statistics.fmean(v), 6) for k, v in sorted(per_key.items())}
        out.append(Completion(generation, round(reward, 6), source, means, flagged=flagged))
    rewarded = [c for c in out if c.reward is not None and c.generation.revision == 0]
    if rewarded:
        mean = math.fsum(c.reward for c in rewarded) / len(rewarded)
        std = math.sqrt(math.fsum((c.reward - mean) ** 2 for c in rewarded) / len(rewarded))  # population std
        for c in rewarded:
            c.advantage = round((c.reward - mean) / (std + EPS), 6)
    return out


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _generations_of(group_ids: list[int]) -> Iterator[tuple]:
    """Flat rows in Gen's field order. Plain SQL: building ORM lookups over thousands of ids
    costs more than the query itself."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Generation._meta.get_field(name).column) for name in ("id", *GEN_FIELDS[1:]))
    marks = ", ".join(["%s"] * len(group_ids))
    with connection.cursor() as cursor:
        # Only model names and %s placeholders are interpolated; every value is a parameter.
        cursor.execute(
            f"SELECT {columns} FROM {_table(Generation)} WHERE group_id IN ({marks}) "  # noqa: S608
            f"ORDER BY group_id, {quote('index')}, revision",
            group_ids,
        )
        decoded: dict[str, list] = {}  # a group's completions share one snapshot: decode it once
        for row in cursor.fetchall():
            messages = row[6]
            if isinstance(messages, str | bytes):
                if messages not in decoded:
                    decoded[messages] = json.loads(messages)
                messages = decoded[messages]
            yield (*row[:6], messages, *row[7:9], bool(row[9]))


def _judgments_of(group_ids: list[int], rubric: Rubric | None) -> dict[int, list[tuple]]:
    """Generation id -> its successful judgments (against the rubric, when there is one) in
    id order, each as (source, flagged, {criterion key: score})."""
    marks = ", ".join(["%s"] * len(group_ids))
    with connection.cursor() as cursor:
        sql = (  # only model names and %s placeholders are interpolated; values are parameters
            f"SELECT j.id, j.generation_id, j.source, j.flagged, s.criterion_id, s.score, j.rubric_id "  # noqa: S608
            f"FROM {_table(Judgment)} j JOIN {_table(Generation)} g ON g.id = j.generation_id "
            f"LEFT JOIN {_table(CriterionScore)} s ON s.judgment_id = j.id "
            f"WHERE j.status = %s AND g.group_id IN ({marks})"
        )
        cursor.execute(sql, [Judgment.Status.OK.value, *group_ids])
        rows = cursor.fetchall()
    # The rubric and the order are applied here: in SQL either can lead the planner to walk
    # every judgment of the rubric for each chunk instead of the chunk's groups.
    rubric_id = rubric.pk if rubric is not None else None
    keys = _criterion_keys()
    found: dict[int, tuple] = {}
    for judgment_id, generation_id, source, flagged, criterion_id, score, judged_on in rows:
        if rubric_id is not None and judged_on != rubric_id:
            continue
        if judgment_id not in found:
            found[judgment_id] = (generation_id, source, bool(flagged), {})
        if criterion_id is not None:
            found[judgment_id][3][keys[criterion_id]] = score
    by_generation: dict[int, list[tuple]] = defaultdict(list)
    for judgment_id in sorted(found):
        generation_id, source, flagged, scores = found[judgment_id]
        by_generation[generation_id].append((source, flagged, {k: scores[k] for k in sorted(scores)}))
    return by_generation


def _criterion_keys() -> dict[int, str]:
    return dict(Criterion.objects.values_list("id", "key"))


def iter_groups(
    f: DatasetFilter, rubric: Rubric | None, calibration: dict | None = None
) -> Iterator[tuple[GroupRow, list[Completion]]]:
    """Selected groups in id order, CHUNK at a time (a handful of flat queries per chunk, so
    memory stays flat whatever the version's size), each with its scored completions."""
    criteria = list(rubric.criteria.all()) if rubric else []
    characters = {c.pk: c for c in Character.objects.all()}
    prompts: dict[int, list] = {}
    ids = list(groups_for(f).values_list("id", flat=True))  # ids only: small even for a million rows
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = list(Group.objects.filter(id__in=chunk).order_by("id").values_list("id", "character_id", "prompt_id"))
        missing = {p for _, _, p in rows} - prompts.keys()
        prompts.update(Prompt.objects.filter(id__in=missing).values_list("id", "messages"))
        generations = defaultdict(list)
        for values in _generations_of(chunk):
            generations[values[1]].append(Gen(*values))
        judgments = _judgments_of(chunk, rubric)
        for group_id, character_id, prompt_id in rows:
            completions = score_group(generations[group_id], judgments, criteria, calibration)
            if f.exclude_flagged:
                completions = [c for c in completions if not c.flagged]
            yield GroupRow(group_id, characters.get(character_id), prompts[prompt_id]), completions
