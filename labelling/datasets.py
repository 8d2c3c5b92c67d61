"""Dataset versions: rewards, group-relative advantages and trainer-ready files.

A version is built from a filter over groups, written once as JSONL under
MEDIA_ROOT/datasets/ with its sha256, row count and stats, and never changed.
Rows stream from the database in chunks (constant memory), in a fixed order with
fixed float rounding and sorted keys, so the same filter over the same data gives
the same bytes. Field names are TRL's (docs/datasets.md).

Reward policy: a completion's reward is the mean weighted score (0..1, rubric
weights) of its human judgments when it has any, else of the judge's latest
successful judgment; a completion with neither has no reward and is left out of
rewarded formats. Advantages are (r - mean) / (std + eps) within a group.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q

from labelling.models import (
    Character,
    Criterion,
    CriterionScore,
    DatasetVersion,
    Generation,
    Group,
    Judgment,
    Prompt,
    Rubric,
)

EPS = 1e-6
CHUNK = 500
REWARD_POLICY = {
    "reward": "weighted mean of criterion scores rescaled to 0..1 (rubric weights)",
    "precedence": "human judgments (mean) over the judge's latest successful judgment",
    "advantage": "(r - mean) / (std + 1e-6) within each group, population std",
}
FORMATS = {k.value for k in DatasetVersion.Kind}


class DatasetCorrupt(Exception):
    """The version's file is missing or no longer matches its recorded hash."""


@dataclass(frozen=True)
class DatasetFilter:
    character: str | None = None
    rubric: str | None = None
    rubric_version: int | None = None
    runs: tuple[int, ...] = ()
    model_version: int | None = None
    created_after: str | None = None
    created_before: str | None = None
    min_human_reviews: int = 0
    exclude_flagged: bool = True
    min_margin: float = 0.1  # pairs: smallest reward gap that makes a pair

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
            "created_after": (str, type(None)),
            "created_before": (str, type(None)),
            "min_human_reviews": (int,),
            "exclude_flagged": (bool,),
            "min_margin": (int, float),
        }
        for name, types in checks.items():
            if name in values and (
                not isinstance(values[name], types) or (isinstance(values[name], bool) and bool not in types)
            ):
                raise ValidationError({name: f"wrong type: {type(values[name]).__name__}"})
        for name in ("rubric_version", "model_version", "min_human_reviews"):
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
        if values.get("min_human_reviews", 0) < 0 or values.get("min_margin", 0.1) < 0:
            raise ValidationError({"filter": "min_human_reviews and min_margin must not be negative"})
        return cls(**values)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# --- selection and rewards -----------------------------------------------------------


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


def groups_for(f: DatasetFilter):
    q = Q()
    if f.character:
        q &= Q(character__slug=f.character)
    if f.runs:
        q &= Q(run_id__in=f.runs)
    if f.model_version:
        q &= Q(generations__model_version_id=f.model_version)
    if f.created_after:
        q &= Q(created_at__gte=f.created_after)
    if f.created_before:
        q &= Q(created_at__lt=f.created_before)
    if f.min_human_reviews:
        q &= Q(review_count__gte=f.min_human_reviews)
    return Group.objects.filter(q).distinct().order_by("id")


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


def _reward(scores: dict[str, int], criteria: list[Criterion]) -> float:
    total = weights = 0.0
    for c in criteria:
        if c.key in scores:
            total += c.weight * (scores[c.key] - c.scale_min) / (c.scale_max - c.scale_min)
            weights += c.weight
    return total / weights if weights else 0.0


def score_group(
    generations: list[Gen], judgments: dict[int, list[tuple]], criteria: list[Criterion]
) -> list[Completion]:
    """The group's completions (originals and revisions) with rewards and advantages.

    `judgments` maps a generation id to its successful judgments against the rubric, in id
    order, each as (source, flagged, {criterion key: score}).
    """
    out = []
    for generation in generations:
        mine = judgments.get(generation.pk, ())
        humans = [j for j in mine if j[0] == Judgment.Source.HUMAN]
        judges = [j for j in mine if j[0] == Judgment.Source.JUDGE]
        flagged = any(j[1] for j in humans)
        chosen, source = (humans, "human") if humans else ((judges[-1:], "judge") if judges else ([], None))
        if not chosen:
            out.append(Completion(generation, None, None, flagged=flagged))
            continue
        if len(chosen) == 1:  # the common case, without the averaging
            scores = chosen[0][2]
            reward, means = _reward(scores, criteria), {k: float(scores[k]) for k in sorted(scores)}
        else:
            per_key = defaultdict(list)
            for _, _, scores in chosen:
                for key, value in scores.items():
                    per_key[key].append(value)
            reward = statistics.fmean(_reward(scores, criteria) for _, _, scores in chosen)
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


def iter_groups(f: DatasetFilter, rubric: Rubric | None) -> Iterator[tuple[GroupRow, list[Completion]]]:
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
            completions = score_group(generations[group_id], judgments, criteria)
            if f.exclude_flagged:
                completions = [c for c in completions if not c.flagged]
            yield GroupRow(group_id, characters.get(character_id), prompts[prompt_id]), completions


# --- formats -----------------------------------------------------------------------------


def _prompt(group: GroupRow, completion: Completion | None = None) -> list[dict]:
    messages = completion.generation.messages if completion else None
    if not messages:
        messages = ([group.character.system_message()] if group.character else []) + list(group.prompt_messages)
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _assistant(completion: Completion) -> list[dict]:
    return [{"role": "assistant", "content": completion.generation.raw_text or completion.generation.text}]


def rows_for(
    kind: str,
    f: DatasetFilter,
    rubric: Rubric | None,
    groups: Iterable[tuple[GroupRow, list[Completion]]] | None = None,
) -> Iterator[dict]:
    """The format's rows for the selected groups (`groups` replaces the database read)."""
    label = f"{rubric.slug}@v{rubric.version}" if rubric else None
    for group, completions in iter_groups(f, rubric) if groups is None else groups:
        originals = [c for c in completions if c.generation.revision == 0]
        base = {
            "group_id": group.pk,
            "character": group.character.slug if group.character else None,
            "rubric_version": label,
        }
        if kind == DatasetVersion.Kind.GRPO:
            rewarded = [c for c in originals if c.reward is not None]
            if rewarded:
                yield {
                    **base,
                    "id": f"g{group.pk}",
                    "prompt": _prompt(group, rewarded[0]),
                    "completions": [_assistant(c) for c in rewarded],
                    "rewards": [c.reward for c in rewarded],
                    "advantages": [c.advantage for c in rewarded],
                    "scores": [c.scores for c in rewarded],
                    "reward_sources": [c.source for c in rewarded],
                    "generation_ids": [c.generation.pk for c in rewarded],
                }
        elif kind == DatasetVersion.Kind.GRPO_PROMPTS:
            yield {**base, "id": f"g{group.pk}", "prompt": _prompt(group, originals[0] if originals else None)}
        elif kind == DatasetVersion.Kind.DPO:
            yield from _pairs(group, completions, base, f.min_margin)
        elif kind == DatasetVersion.Kind.KTO:
            for c in originals:
                if c.advantage is not None and c.advantage != 0:
                    yield {
                        **base,
                        "id": f"c{c.generation.pk}",
                        "prompt": _prompt(group, c),
                        "completion": _assistant(c),
                        "label": c.advantage > 0,
                        "reward": c.reward,
                    }
        elif kind == DatasetVersion.Kind.SFT:
            best = max(
                (c for c in completions if c.reward is not None and c.generation.think_valid),
                key=lambda c: (c.reward, -c.generation.pk),
                default=None,
            )
            if best is not None:
                yield {
                    **base,
                    "id": f"c{best.generation.pk}",
                    "messages": _prompt(group, best) + _assistant(best),
                    "reward": best.reward,
                }
        else:
            raise ValidationError({"kind": f"unknown format {kind!r} ({', '.join(sorted(FORMATS))})"})


def _pairs(group: GroupRow, completions: list[Completion], base: dict, min_margin: float) -> Iterator[dict]:
    """Pairs by reward gap (ties never pair), and every rewrite over the completion it revised."""
    seen = set()
    by_id = {c.generation.pk: c for c in completions}
    for c in completions:  # a reviewer's rewrite is chosen over its parent, whatever the scores
        parent = by_id.get(c.generation.parent_id)
        if c.generation.source == Generation.Source.HUMAN_REWRITE and parent is not None:
            seen.add((c.generation.pk, parent.generation.pk))
            margin = round(c.reward - parent.reward, 6) if c.reward is not None and parent.reward is not None else None
            yield {
                **base,
                "id": f"p{c.generation.pk}>{parent.generation.pk}",
                "prompt": _prompt(group, parent),
                "chosen": _assistant(c),
                "rejected": _assistant(parent),
                "margin": margin,
                "origin": "rewrite",
            }
    rewarded = sorted(
        (c for c in completions if c.reward is not None and c.generation.revision == 0),
        key=lambda c: c.generation.index,
    )
    for i, a in enumerate(rewarded):
        for b in rewarded[i + 1 :]:
            if abs(a.reward - b.reward) < max(min_margin, EPS):
                continue
            chosen, rejected = (a, b) if a.reward > b.reward else (b, a)
            if (chosen.generation.pk, rejected.generation.pk) in seen:
                continue
            yield {
                **base,
                "id": f"p{chosen.generation.pk}>{rejected.generation.pk}",
                "prompt": _prompt(group, chosen),
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
                "margin": round(chosen.reward - rejected.reward, 6),
                "origin": "ranking",
            }


# --- stats, files, versions ---------------------------------------------------------------


class Stats:
    def __init__(self, kind: str):
        self.kind = kind
        self.rows = 0
        self.reward_histogram = [0] * 10
        self.scores: dict[str, Counter] = defaultdict(Counter)
        self.groups = 0
        self.zero_advantage_groups = 0
        self.sources = Counter()

    def add(self, row: dict) -> None:
        self.rows += 1
        rewards = row.get("rewards") or ([row["reward"]] if row.get("reward") is not None else [])
        for r in rewards:
            self.reward_histogram[min(9, int(r * 10))] += 1
        for scores in row.get("scores", []):
            for key, value in scores.items():
                self.scores[key][str(value)] += 1
        if "advantages" in row:
            self.groups += 1
            if all(a == 0 for a in row["advantages"]):
                self.zero_advantage_groups += 1
        for source in row.get("reward_sources", []):
            self.sources[source] += 1

    def as_dict(self) -> dict:
        coverage = sum(self.sources.values())
        return {
            "rows": self.rows,
            "reward_histogram": {"bins": [round(i / 10, 1) for i in range(11)], "counts": self.reward_histogram},
            "score_distributions": {
                k: dict(sorted(v.items(), key=lambda kv: float(kv[0]))) for k, v in sorted(self.scores.items())
            },
            "zero_advantage_share": round(self.zero_advantage_groups / self.groups, 4) if self.groups else None,
            "coverage": {s: round(n / coverage, 4) for s, n in sorted(self.sources.items())} if coverage else {},
        }


def _encode(row: dict) -> bytes:
    return (json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()


def write_rows(rows: Iterable[dict], path: Path, kind: str) -> tuple[str, Stats]:
    digest, stats = hashlib.sha256(), Stats(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for row in rows:
            line = _encode(row)
            digest.update(line)
            out.write(line)
            stats.add(row)
    return digest.hexdigest(), stats


def dataset_build(*, dataset: str, kind: str, filter: dict | None = None, created_by=None) -> DatasetVersion:
    """Freeze a new numbered version; refuses a filter that selects nothing (writes nothing)."""
    if kind not in FORMATS:
        raise ValidationError({"kind": f"unknown format {kind!r} ({', '.join(sorted(FORMATS))})"})
    if not dataset or not all(ch.isalnum() or ch in "-_" for ch in dataset):
        raise ValidationError({"dataset": "a slug is required (letters, digits, - and _)"})
    f = DatasetFilter.from_dict(filter or {})
    rubric = rubric_for(f)
    if kind != DatasetVersion.Kind.GRPO_PROMPTS and rubric is None:
        raise ValidationError({"rubric": f"a {kind} export needs a rubric (rewards come from its weights)"})
    root = Path(settings.MEDIA_ROOT) / "datasets" / dataset
    tmp = root / f".building-{kind}-{id(f)}.jsonl"
    try:
        sha, stats = write_rows(rows_for(kind, f, rubric), tmp, kind)
        if stats.rows == 0:
            raise ValidationError({"filter": "the filter selects no rows for this format"})
        for _ in range(5):  # a concurrent build may take the number: take the next
            number = (DatasetVersion.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"] or 0) + 1
            final = root / f"v{number}-{kind}.jsonl"
            try:
                with transaction.atomic():
                    version = DatasetVersion.objects.create(
                        dataset=dataset,
                        number=number,
                        kind=kind,
                        filter=f.as_dict(),
                        reward_policy={
                            **REWARD_POLICY,
                            "rubric": f"{rubric.slug}@v{rubric.version}" if rubric else None,
                            "rubric_spec": rubric.as_spec() if rubric else None,
                        },
                        row_count=stats.rows,
                        sha256=sha,
                        stats=stats.as_dict(),
                        file=str(final.relative_to(settings.MEDIA_ROOT)),
                        created_by=created_by,
                        parent=DatasetVersion.objects.filter(dataset=dataset).order_by("-number").first(),
                    )
                    tmp.replace(final)
                return version
            except IntegrityError:
                continue
        raise ValidationError({"dataset": "could not take a version number; try again"})
    finally:
        tmp.unlink(missing_ok=True)


def dataset_path(version: DatasetVersion) -> Path:
    return Path(settings.MEDIA_ROOT) / version.file.name


def dataset_verify(version: DatasetVersion) -> None:
    path = dataset_path(version)
    if not version.file or not path.is_file():
        raise DatasetCorrupt(f"{version}: its file {version.file.name or '(none)'} is missing")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != version.sha256:
        raise DatasetCorrupt(f"{version}: its file no longer matches its sha256")


def dataset_stream(version: DatasetVersion, block: int = 1 << 16) -> Iterator[bytes]:
    """The file's bytes, after checking them: a corrupt version is never served."""
    dataset_verify(version)
    with open(dataset_path(version), "rb") as f:
        yield from iter(lambda: f.read(block), b"")


def dataset_compare(old: DatasetVersion, new: DatasetVersion) -> dict:
    """Rows added, removed and changed between two versions (rows are keyed by their id)."""

    def index(version: DatasetVersion) -> dict[str, str]:
        dataset_verify(version)
        rows = {}
        with open(dataset_path(version), "rb") as f:
            for line in f:
                rows[json.loads(line)["id"]] = hashlib.sha256(line).hexdigest()
        return rows

    a, b = index(old), index(new)
    changed = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    return {
        "added": sorted(b.keys() - a.keys()),
        "removed": sorted(a.keys() - b.keys()),
        "changed": changed,
        "unchanged": len(a.keys() & b.keys()) - len(changed),
    }
