"""Writes of generator versions: which one is current (making another current is also how a
rollback is done), retiring one, and restoring the shipped version 1."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from labelling.generators import weights
from labelling.models import GeneratorVersion


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
