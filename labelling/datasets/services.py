"""Freezing a dataset version: select, score, write the file once, number it (all or nothing)."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max

from labelling.catalogue import services as catalogue_services
from labelling.datasets.filters import DatasetFilter, groups_for, held_out_prompt_ids, rubric_for
from labelling.datasets.formats import FORMATS, rows_for
from labelling.datasets.rewards import CALIBRATED_POLICY, REWARD_POLICY
from labelling.datasets.storage import write_rows
from labelling.models import (
    DatasetVersion,
    Prompt,
    PromptSet,
)
from shaping_core import strict

DATASET_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


def dataset_build(
    *, dataset: str, kind: str, filter: dict | None = None, created_by=None, calibration: dict | None = None
) -> DatasetVersion:
    """Freeze a new numbered version; refuses a filter that selects nothing (writes nothing).
    With `calibration` (a campaign's judge fitted against its reviewers: criterion key -> table)
    rewards follow `rewards.CALIBRATED_POLICY`, recorded with the version."""
    if kind not in FORMATS:
        raise ValidationError({"kind": f"unknown format {kind!r} ({', '.join(sorted(FORMATS))})"})
    if not DATASET_NAME.fullmatch(dataset or ""):
        # ASCII: the name is a folder and the download's filename (Content-Disposition).
        raise ValidationError({"dataset": "a slug is required: up to 80 ASCII letters, digits, - and _"})
    try:
        strict.checked(filter or {})
    except strict.NotStrictJson as exc:  # NaN compares false with everything: a filter of nothing
        raise ValidationError({"filter": str(exc)}) from None
    f = DatasetFilter.from_dict(filter or {})
    rubric = rubric_for(f)
    if kind != DatasetVersion.Kind.GRPO_PROMPTS and rubric is None:
        raise ValidationError({"rubric": f"a {kind} export needs a rubric (rewards come from its weights)"})
    root = Path(settings.MEDIA_ROOT) / "datasets" / dataset
    tmp = root / f".building-{kind}-{uuid.uuid4().hex}.jsonl"  # never shared by two builders
    try:
        sha, stats = write_rows(rows_for(kind, f, rubric, calibration=calibration), tmp, kind)
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
                            **({"precedence": CALIBRATED_POLICY, "calibration": calibration} if calibration else {}),
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
        with contextlib.suppress(OSError):  # a build that wrote nothing leaves no empty folder
            root.rmdir()


def dataset_held_out_prompt_set(*, version: DatasetVersion) -> PromptSet:
    """The prompts a version held out, as a prompt set of their own (made once, named
    `<dataset>-v<N>-held-out`): what an evaluation of a version trained on it runs on."""
    f = DatasetFilter.from_dict(version.filter or {})
    if not f.held_out:
        raise ValidationError(
            {"dataset": f"{version.dataset} v{version.number} holds no prompts out: build it with a held_out share"}
        )
    slug = f"{version.dataset}-v{version.number}-held-out"[:80]
    with transaction.atomic():
        prompt_set, created = PromptSet.objects.get_or_create(
            slug=slug,
            defaults={
                "name": f"{version.dataset} v{version.number}, held out",
                "description": f"The {f.held_out:.0%} of prompts dataset {version.dataset} v{version.number} kept out of training.",
            },
        )
        if created:
            held = held_out_prompt_ids(f, groups_for(f, held_out=False))
            prompts = (
                Prompt.objects.filter(pk__in=held)
                .select_related("prompt_set")
                .order_by("prompt_set__slug", "order", "pk")
            )
            catalogue_services.prompts_copy(prompt_set=prompt_set, prompts=prompts, origin="held_out_from")
    if not prompt_set.prompts.exists():
        raise ValidationError({"dataset": f"{version.dataset} v{version.number} held out no prompt (too few prompts)"})
    return prompt_set
