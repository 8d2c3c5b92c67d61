"""Writes of generator versions: which one is current (making another current is also how a
rollback is done), retiring one, restoring the shipped version 1, and registering a base
model prepared on this host (the demo model)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from labelling.models import GeneratorVersion
from shaping_core import weights


@transaction.atomic
def generator_version_make_current(*, version: GeneratorVersion) -> GeneratorVersion:
    """Make a ready version the current one of its model (unpinned runs generate with it)."""
    # Every version of the model is locked, so two concurrent calls run one after the other and
    # the second sees the first's result (SQLite's IMMEDIATE transactions serialise them anyway).
    rows = {
        row.pk: row
        for row in GeneratorVersion.objects.select_for_update().filter(model_name=version.model_name).order_by("pk")
    }
    version = rows.get(version.pk)
    if version is None:
        raise ValidationError({"generator_version": "that version no longer exists"})
    if version.status != GeneratorVersion.Status.READY:
        raise ValidationError(
            {
                "status": f"version {version.number} of {version.model_name} is {version.status}; only a ready version can be current"
            }
        )
    if not version.is_current:
        # Two statements in this order: the one-current constraint never sees two current rows.
        GeneratorVersion.objects.filter(model_name=version.model_name, is_current=True).update(is_current=False)
        GeneratorVersion.objects.filter(pk=version.pk).update(is_current=True)
        version.refresh_from_db()
    return version


@transaction.atomic
def generator_version_retire(*, version: GeneratorVersion) -> GeneratorVersion:
    """Take a version out of use: runs pinned to it fail when they execute. The current version
    cannot be retired (make another one current first): unpinned runs need one."""
    version = GeneratorVersion.objects.select_for_update().get(pk=version.pk)
    if version.is_current:
        raise ValidationError(
            {"status": f"version {version.number} is current; make another version current before retiring it"}
        )
    if version.status != GeneratorVersion.Status.RETIRED:
        version.status = GeneratorVersion.Status.RETIRED
        version.save(update_fields=["status", "updated_at"])
    return version


@transaction.atomic
def generator_version_shipped_restore() -> GeneratorVersion:
    """Version 1 as migration 0010_generator_versions creates it, if it is missing (a flushed
    database); made current only when no version is."""
    fields = weights.shipped_version(settings.BASE_DIR)
    version = GeneratorVersion.objects.filter(model_name=fields["model_name"], number=1).first()
    if version is not None:
        return version
    if GeneratorVersion.objects.filter(model_name=fields["model_name"], is_current=True).exists():
        fields["is_current"] = False
    return GeneratorVersion.objects.create(**fields)


@transaction.atomic
def generator_version_register_base(
    *, onnx_dir: str, hf_dir: str, weights_sha256: str, provenance: dict, model_name: str = weights.GENERATOR_MODEL
) -> tuple[GeneratorVersion, str]:
    """A base model prepared here (`manage.py prepare_model`) as a ready generator version, and
    what was done: "registered" (it replaces the shipped tiny model as version 1, which nothing
    has used yet), "added" (a new version beside the lineage the tiny model already has: its
    texts keep naming the weights that made them), or "unchanged" (already registered).

    The new base is made current when the current version is the shipped tiny model; a version
    someone made current stays current. Safe to run twice and at the same time: every version
    of the model is locked first."""
    rows = list(GeneratorVersion.objects.select_for_update().filter(model_name=model_name).order_by("number"))
    for row in rows:
        if not row.method and row.weights_sha256 == weights_sha256 and row.status == GeneratorVersion.Status.READY:
            return row, "unchanged"
    fields = {
        "onnx_dir": onnx_dir,
        "hf_dir": hf_dir,
        "weights_sha256": weights_sha256,
        "config": {"base_model": provenance},
    }
    first = next((row for row in rows if row.number == 1), None)
    current = next((row for row in rows if row.is_current), None)
    tiny_current = current is None or (current.onnx_dir == weights.SHIPPED_ONNX_DIR and not current.method)
    if first is not None and first.onnx_dir == weights.SHIPPED_ONNX_DIR and not _used(first):
        for name, value in fields.items():
            setattr(first, name, value)
        first.status = GeneratorVersion.Status.READY
        first.save(update_fields=[*fields, "status", "updated_at"])
        version, done = first, "registered"
    else:
        number = max((row.number for row in rows), default=0) + 1
        version = GeneratorVersion.objects.create(
            model_name=model_name, number=number, status=GeneratorVersion.Status.READY, **fields
        )
        done = "added"
    if tiny_current and not version.is_current:
        GeneratorVersion.objects.filter(model_name=model_name, is_current=True).update(is_current=False)
        GeneratorVersion.objects.filter(pk=version.pk).update(is_current=True)
        version.refresh_from_db()
    return version, done


def _used(version: GeneratorVersion) -> bool:
    """Whether anything names this version: a text it generated, a version trained from it, an
    evaluation or a run pinned to it."""
    from labelling.models import Evaluation, PipelineRun

    return (
        version.producers.exists()
        or version.children.exists()
        or Evaluation.objects.filter(Q(candidate=version) | Q(baseline=version)).exists()
        or PipelineRun.objects.filter(params__generator_version=version.number).exists()
    )
