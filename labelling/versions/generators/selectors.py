"""Reads of generator versions: the lineage list, the current one, the one a run generates with."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.db.models import QuerySet

from labelling.models import GeneratorVersion
from shaping_core import rules
from shaping_core.weights import GENERATOR_MODEL, SHIPPED_ONNX_DIR


class GeneratorUnavailable(Exception):
    """The version a run would generate with does not exist or is not ready. Its text says which
    and why (a run records it as its failure; run_start turns it into a field error)."""


def generator_versions(model_name: str = GENERATOR_MODEL) -> QuerySet[GeneratorVersion]:
    """Every version, oldest first (the lineage reads v1 -> v2 -> ...), with its parent and dataset."""
    return (
        GeneratorVersion.objects.filter(model_name=model_name)
        .select_related("parent", "dataset_version", "train_run")
        .order_by("number")
    )


def generator_versions_ready(model_name: str = GENERATOR_MODEL) -> QuerySet[GeneratorVersion]:
    return generator_versions(model_name).filter(status=GeneratorVersion.Status.READY)


def generator_version_current(model_name: str = GENERATOR_MODEL) -> GeneratorVersion | None:
    return GeneratorVersion.objects.filter(model_name=model_name, is_current=True).first()


def generator_version_for(number: object = None, model_name: str = GENERATOR_MODEL) -> GeneratorVersion:
    """The ready version numbered `number`, or the current one when `number` is None.
    GeneratorUnavailable otherwise (no such version, not ready, or none current)."""
    if number is None:
        current = generator_version_current(model_name)
        if current is None:
            raise GeneratorUnavailable(f"no version of {model_name} is current; make a ready one current first")
        return current
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise GeneratorUnavailable(f"{number!r} is not a version number (1, 2, ...)")
    version = GeneratorVersion.objects.filter(model_name=model_name, number=number).first()
    if version is None:
        raise GeneratorUnavailable(f"there is no version {number} of {model_name}")
    if version.status != GeneratorVersion.Status.READY:
        raise GeneratorUnavailable(f"version {number} of {model_name} is {version.status}, not ready")
    return version


def generator_version_checked(number: object = None, model_name: str = GENERATOR_MODEL) -> GeneratorVersion:
    """generator_version_for, with a refusal as a ValidationError on the field `generator_version`."""
    try:
        return generator_version_for(number, model_name)
    except GeneratorUnavailable as exc:
        raise ValidationError({"generator_version": str(exc)}) from None


def generator_version_dir(version: GeneratorVersion) -> Path:
    """The ONNX folder a version serves: its row's, except that GENERATOR_MODEL_DIR (when set)
    replaces version 1's base weights on this host (a GPU host's own export)."""
    if version.number == 1 and not version.method and settings.GENERATOR_MODEL_DIR:
        return Path(settings.GENERATOR_MODEL_DIR)
    return GeneratorVersion.path(version.onnx_dir)


def generator_version_hf_dir(version: GeneratorVersion) -> Path | None:
    """The Hugging Face weights a version trains from: its row's, except that where
    GENERATOR_MODEL_DIR replaces version 1's served weights, the ones built beside them
    (`GENERATOR_MODEL_DIR/hf`, what `build_model --keep-hf` writes): training from the row's
    would train other weights than those served. None when there are none recorded."""
    if version.number == 1 and not version.method and settings.GENERATOR_MODEL_DIR:
        return Path(settings.GENERATOR_MODEL_DIR) / "hf"
    return GeneratorVersion.path(version.hf_dir) if version.hf_dir else None


def generator_version_base(model_name: str = GENERATOR_MODEL) -> GeneratorVersion | None:
    """The base model: the newest ready version not trained here (version 1, or the demo model
    registered after it on an install that had used version 1 already)."""
    return generator_versions_ready(model_name).filter(method="").order_by("-number").first()


def judge_model_dir() -> Path:
    """The judge's ONNX folder: JUDGE_MODEL_DIR, else the base model's (the demo model once
    prepared), else the shipped tiny model (no database to ask)."""
    if settings.JUDGE_MODEL_DIR:
        return Path(settings.JUDGE_MODEL_DIR)
    try:
        base = generator_version_base()
    except DatabaseError:  # file-mode commands before `migrate`
        base = None
    if base is not None:
        return generator_version_dir(base)
    return Path(settings.GENERATOR_MODEL_DIR or GeneratorVersion.path(SHIPPED_ONNX_DIR))


def reward_weights(params: dict | None) -> list[dict] | None:
    """A GRPO train run's reward functions with the weight each had, from the run's recorded
    params: the `training.reward_weights` it was given, else the ones derived from its rubric
    (`rubric_spec`) as the trainer derives them (inference/versions/training/rewards.py): one
    function per rule criterion of weight above 0 (`rule_<key>`), weighted by its rubric weight
    over the total, and one `judge` for the other criteria together, weighted by the sum of
    theirs. None for DPO and SFT (no reward functions)."""
    params = params or {}
    spec = params.get("rubric_spec")
    if params.get("method") != "grpo" or not isinstance(spec, dict):
        return None
    weighted = [c for c in spec.get("criteria") or [] if isinstance(c, dict) and c.get("weight", 1.0) > 0]
    ruled = [c for c in weighted if rules.is_rule(c)]
    judged = [c for c in weighted if not rules.is_rule(c)]
    functions = [(f"rule_{c['key']}", [c["key"]], c.get("weight", 1.0)) for c in ruled]
    if judged:
        functions.append(("judge", [c["key"] for c in judged], sum(c.get("weight", 1.0) for c in judged)))
    total = sum(w for _, _, w in functions) or 1.0
    given = ((params.get("training") or {}).get("reward_weights")) or None
    if given is not None and len(given) != len(functions):
        given = None  # the trainer refuses such a run: it trained with none
    return [
        {
            "function": name,
            "criteria": keys,
            "weight": float(given[i]) if given is not None else round(w / total, 6),
            "derived": given is None,
        }
        for i, (name, keys, w) in enumerate(functions)
    ]
