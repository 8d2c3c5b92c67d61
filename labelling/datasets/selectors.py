"""Reads over frozen versions: what changed between two of them, and the one a `NAME@N` names."""

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import ValidationError

from labelling.datasets.storage import dataset_path, dataset_verify
from labelling.models import (
    DatasetVersion,
)
from shaping_core import strict


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


def dataset_version_named(text: str) -> DatasetVersion:
    """The version `NAME@N` names (the train and evaluate commands, the API); a ValidationError
    on `dataset` saying what is wrong otherwise."""
    name, sep, number = (text or "").rpartition("@")
    if not sep or not name or strict.whole_number(number) is None:
        raise ValidationError({"dataset": f"{text!r}: expected NAME@N, e.g. aria@3"})
    version = DatasetVersion.objects.filter(dataset=name, number=int(number)).first()
    if version is None:
        raise ValidationError({"dataset": f"there is no version {number} of dataset {name!r}"})
    return version
