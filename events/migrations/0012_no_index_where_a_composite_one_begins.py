"""Drop the single-column indexes of the event's foreign keys: ``event_school_created_idx`` and
``event_type_created_idx`` begin with them, and each index is written at every publish and
again when the event is fanned out. Only the indexes are dropped, not the foreign-key
constraints (see ``deliveries 0014``)."""

import django.db.models.deletion
from django.db import migrations, models

# (index, column, PostgreSQL operator class or "") as the earlier migrations created them.
INDEXES = [
    ("events_event_school_id_dc9debbd", "school_id", ""),
    ("events_event_type_369b1d2e", "type", ""),
    ("events_event_type_369b1d2e_like", "type", "varchar_pattern_ops"),
]


def drop(apps, schema_editor):
    for index, _column, _opclass in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{index}"')


def create(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for index, column, opclass in INDEXES:
        if opclass and not postgresql:
            continue
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{index}" ON "events_event" ("{column}" {opclass})'
        )


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0011_event_data_search_index'),
        ('schools', '0006_labels_in_the_admins_language'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='event',
                    name='school',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='schools.school', verbose_name='school'),
                ),
                migrations.AlterField(
                    model_name='event',
                    name='type',
                    field=models.ForeignKey(db_column='type', db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='events.eventtype', verbose_name='event type'),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create)],
        ),
    ]
