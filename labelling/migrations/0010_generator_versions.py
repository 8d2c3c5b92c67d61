"""Generator versions as rows: numbered versions of the served generator with their lineage
(parent, dataset version, method), exactly one current per model name; ModelVersion names the
version that produced a text. The data step creates version 1 of qwen3: the tiny model shipped
in inference/weights/tiny-qwen3, ready and current, its weights_sha256 one sha256 over the bytes
of model.onnx.data followed by those of model.onnx (shaping_core.weights)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from shaping_core import weights


def create_version_1(apps, schema_editor):
    GeneratorVersion = apps.get_model("labelling", "GeneratorVersion")
    fields = weights.shipped_version(settings.BASE_DIR)
    if not GeneratorVersion.objects.filter(model_name=fields["model_name"], number=1).exists():
        GeneratorVersion.objects.create(**fields)


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0009_exactly_once"),
    ]
    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="model_version",
            field=models.CharField(
                blank=True, help_text="For a generator version: its number, as text.", max_length=60
            ),
        ),
        migrations.CreateModel(
            name="GeneratorVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "model_name",
                    models.CharField(default="qwen3", help_text="The Triton model that serves it.", max_length=120),
                ),
                ("number", models.PositiveIntegerField()),
                (
                    "method",
                    models.CharField(
                        blank=True,
                        choices=[("", "shipped (not trained here)"), ("grpo", "GRPO"), ("dpo", "DPO"), ("sft", "SFT")],
                        default="",
                        max_length=10,
                    ),
                ),
                ("config", models.JSONField(blank=True, default=dict, help_text="Training settings.")),
                ("weights_sha256", models.CharField(blank=True, max_length=64)),
                (
                    "onnx_dir",
                    models.CharField(
                        blank=True, help_text="Relative to the project root unless absolute.", max_length=500
                    ),
                ),
                (
                    "hf_dir",
                    models.CharField(
                        blank=True, help_text="Relative to the project root unless absolute.", max_length=500
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("training", "Training"),
                            ("converting", "Converting"),
                            ("ready", "Ready"),
                            ("failed", "Failed"),
                            ("retired", "Retired"),
                        ],
                        default="training",
                        max_length=12,
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("is_current", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "dataset_version",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="generator_versions",
                        to="labelling.datasetversion",
                    ),
                ),
                (
                    "parent",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="children",
                        to="labelling.generatorversion",
                    ),
                ),
            ],
            options={
                "ordering": ["model_name", "number"],
            },
        ),
        migrations.AddField(
            model_name="modelversion",
            name="generator",
            field=models.ForeignKey(
                blank=True,
                help_text="The exact generator version (weights) that produced the text; none for judges, imports, humans.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="model_versions",
                to="labelling.generatorversion",
            ),
        ),
        migrations.AddConstraint(
            model_name="generatorversion",
            constraint=models.UniqueConstraint(fields=("model_name", "number"), name="generator_version_number_unique"),
        ),
        migrations.AddConstraint(
            model_name="generatorversion",
            constraint=models.CheckConstraint(
                condition=models.Q(("number__gte", 1)), name="generator_version_number_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="generatorversion",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_current", True)), fields=("model_name",), name="generator_version_one_current"
            ),
        ),
        migrations.AddConstraint(
            model_name="generatorversion",
            constraint=models.CheckConstraint(
                condition=models.Q(("is_current", False), ("status", "ready"), _connector="OR"),
                name="generator_version_current_is_ready",
            ),
        ),
        migrations.AddConstraint(
            model_name="generatorversion",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["training", "converting", "ready", "failed", "retired"])),
                name="generator_version_status_known",
            ),
        ),
        migrations.AddConstraint(
            model_name="generatorversion",
            constraint=models.CheckConstraint(
                condition=models.Q(("method__in", ["", "grpo", "dpo", "sft"])), name="generator_version_method_known"
            ),
        ),
        migrations.RunPython(create_version_1, migrations.RunPython.noop),
    ]
