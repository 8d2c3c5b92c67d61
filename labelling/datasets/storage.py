"""A version's file: written once with its sha256 and stats, checked before every read, streamed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings

from labelling.models import (
    DatasetVersion,
)


class DatasetCorrupt(Exception):
    """The version's file is missing or no longer matches its recorded hash."""


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
    with _created(path) as out:
        for row in rows:
            line = _encode(row)
            digest.update(line)
            out.write(line)
            stats.add(row)
    return digest.hexdigest(), stats


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


def _created(path: Path):
    """`path` opened for writing, its folder made first. A build that wrote nothing removes its
    dataset's folder if it is empty (services.dataset_build): when one does so between this
    mkdir and this open, the folder is made again."""
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return open(path, "wb")  # noqa: SIM115 - the caller's `with` closes it
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
