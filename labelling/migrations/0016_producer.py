"""ModelVersion becomes Producer (what produced a text: backend, endpoint, served model and
version, sampling), so that its name no longer collides with GeneratorVersion (the generator's
numbered weights, the "model versions" of /models/ and /api/model-versions).

A rename, written by hand: the autodetector would drop the table and the foreign keys and create
new ones (the generator's related_name changes too, so it does not see a rename). The foreign
keys `model_version` of runs, generations and judgments become `producer`; the producer's own
`model_version` (the served model's version text) keeps its name. The judge-has-an-author check
names the renamed field, so it is dropped before the rename and made again after it.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0015_model_version_endpoint"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="judgment",
            name="judgment_source_has_author",
        ),
        migrations.RenameModel(
            old_name="ModelVersion",
            new_name="Producer",
        ),
        migrations.AlterField(
            model_name="producer",
            name="generator",
            field=models.ForeignKey(
                blank=True,
                help_text="The exact generator version (weights) that produced the text; none for judges, imports, humans.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="producers",
                to="labelling.generatorversion",
            ),
        ),
        migrations.RenameField(
            model_name="pipelinerun",
            old_name="model_version",
            new_name="producer",
        ),
        migrations.RenameField(
            model_name="generation",
            old_name="model_version",
            new_name="producer",
        ),
        migrations.RenameField(
            model_name="judgment",
            old_name="model_version",
            new_name="producer",
        ),
        migrations.AddConstraint(
            model_name="judgment",
            constraint=models.CheckConstraint(
                condition=models.Q(("producer__isnull", False), ("source", "judge"))
                | models.Q(("reviewer__isnull", False), ("source", "human")),
                name="judgment_source_has_author",
            ),
        ),
    ]
