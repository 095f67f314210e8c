"""The outbox index gets the order fan-out takes events in: (created_at, id), awaiting fan-out.

Fan-out reads the oldest waiting events ``ORDER BY created_at, id``. With the old index, on
``created_at`` only, and statistics older than the backlog (workers stopped for a while),
PostgreSQL read, joined and sorted the whole outbox for every batch: 84 ms per batch of 200
with 50,000 events waiting, the sort spilling to disk.

Built ``CONCURRENTLY`` on PostgreSQL, then the old one is dropped (``common.indexes``).
"""

from django.db import migrations, models

from common.indexes import index_replace

OLD = models.Index(
    fields=["created_at"],
    condition=models.Q(fanned_out_at__isnull=True),
    name="event_awaiting_fan_out_idx",
)
NEW = models.Index(
    fields=["created_at", "id"],
    condition=models.Q(fanned_out_at__isnull=True),
    name="event_outbox_in_order_idx",
)


def forwards(apps, schema_editor):
    index_replace(schema_editor, apps.get_model("events", "Event"), build=NEW, drop=OLD)


def backwards(apps, schema_editor):
    index_replace(schema_editor, apps.get_model("events", "Event"), build=OLD, drop=NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("events", "0012_no_index_where_a_composite_one_begins"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="event", name=OLD.name),
                migrations.AddIndex(model_name="event", index=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
