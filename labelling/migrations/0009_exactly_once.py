"""Exactly once: a claim counter on runs, one judge judgment per completion, rubric and run,
and run counters that cannot pass the total (0008 repaired rows written twice before)."""

import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0008_exactly_once_repair"),
    ]

    operations = [
        migrations.AddField(
            model_name="pipelinerun",
            name="execution",
            field=models.PositiveIntegerField(
                default=0, help_text="Raised by each claim: a worker whose number is no longer current stops."
            ),
        ),
        migrations.AddConstraint(
            model_name="judgment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("run__isnull", False), ("source", "judge")),
                fields=("generation", "rubric", "run"),
                name="judgment_judge_once_per_run",
            ),
        ),
        migrations.AddConstraint(
            model_name="pipelinerun",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "done_items__lte",
                        django.db.models.expressions.CombinedExpression(
                            models.F("total_items"), "-", models.F("failed_items")
                        ),
                    )
                ),
                name="run_counters_within_total",
            ),
        ),
    ]
