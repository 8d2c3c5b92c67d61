"""Exactly once: a claim counter on runs, one judge judgment per completion, rubric and run,
and run counters that cannot pass the total.

Rows written twice before these constraints existed (a run resumed while it was running)
are repaired first: of duplicate judge judgments the earliest is kept (the later ones came
from a second execution of the same run), and counters are brought within the total.
"""

from django.db import migrations, models


def repair(apps, schema_editor):
    Judgment = apps.get_model("labelling", "Judgment")
    PipelineRun = apps.get_model("labelling", "PipelineRun")
    seen = set()
    duplicates = []
    rows = (
        Judgment.objects.filter(source="judge", run__isnull=False)
        .order_by("id")
        .values_list("id", "generation_id", "rubric_id", "run_id")
    )
    for pk, generation, rubric, run in rows.iterator(chunk_size=2000):
        key = (generation, rubric, run)
        if key in seen:
            duplicates.append(pk)
        else:
            seen.add(key)
    for start in range(0, len(duplicates), 500):
        Judgment.objects.filter(pk__in=duplicates[start : start + 500]).delete()
    for run in PipelineRun.objects.filter(done_items__gt=models.F("total_items") - models.F("failed_items")):
        run.failed_items = min(run.failed_items, run.total_items)
        run.done_items = run.total_items - run.failed_items
        run.save(update_fields=["done_items", "failed_items"])


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0007_group_queue_open"),
    ]

    operations = [
        migrations.RunPython(repair, migrations.RunPython.noop),
    ]
