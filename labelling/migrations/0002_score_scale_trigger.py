"""Refuse a criterion score outside its criterion's scale in the database itself.

A CHECK constraint cannot look at another table, so this is a trigger, written
for each supported database.
"""

from django.db import migrations

MESSAGE = "score outside the criterion scale"

SQLITE_FORWARD = [
    f"""
    CREATE TRIGGER labelling_score_in_scale_{op.lower()}
    BEFORE {op} ON labelling_criterionscore
    FOR EACH ROW
    WHEN NEW.score < (SELECT scale_min FROM labelling_criterion WHERE id = NEW.criterion_id)
      OR NEW.score > (SELECT scale_max FROM labelling_criterion WHERE id = NEW.criterion_id)
    BEGIN
        SELECT RAISE(ABORT, '{MESSAGE}');
    END;
    """
    for op in ("INSERT", "UPDATE")
]
SQLITE_REVERSE = [f"DROP TRIGGER IF EXISTS labelling_score_in_scale_{op};" for op in ("insert", "update")]

POSTGRES_FORWARD = [
    f"""
    CREATE OR REPLACE FUNCTION labelling_score_in_scale() RETURNS trigger AS $$
    DECLARE lo smallint; hi smallint;
    BEGIN
        SELECT scale_min, scale_max INTO lo, hi FROM labelling_criterion WHERE id = NEW.criterion_id;
        IF NEW.score < lo OR NEW.score > hi THEN
            RAISE EXCEPTION '{MESSAGE}: % not in [%, %]', NEW.score, lo, hi
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql;
    """,
    """
    CREATE TRIGGER labelling_score_in_scale
    BEFORE INSERT OR UPDATE ON labelling_criterionscore
    FOR EACH ROW EXECUTE FUNCTION labelling_score_in_scale();
    """,
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS labelling_score_in_scale ON labelling_criterionscore;",
    "DROP FUNCTION IF EXISTS labelling_score_in_scale();",
]


def _for_vendor(schema_editor, postgres: list[str], sqlite: list[str]) -> list[str]:
    vendor = schema_editor.connection.vendor
    if vendor not in {"postgresql", "sqlite"}:
        raise NotImplementedError(f"the score-scale trigger supports PostgreSQL and SQLite, not {vendor}")
    return postgres if vendor == "postgresql" else sqlite


def forward(apps, schema_editor):
    statements = _for_vendor(schema_editor, POSTGRES_FORWARD, SQLITE_FORWARD)
    for sql in statements:
        schema_editor.execute(sql, params=None)


def reverse(apps, schema_editor):
    statements = _for_vendor(schema_editor, POSTGRES_REVERSE, SQLITE_REVERSE)
    for sql in statements:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("labelling", "0001_initial")]
    operations = [migrations.RunPython(forward, reverse)]
