"""The index of waiting deliveries gets the order they are taken up in: (webhook, due time, id).

Taking up a webhook's next waiting deliveries (``claim.py``) reads them in ``next_attempt_at,
id`` order. The old index, on (webhook, due time) only, left PostgreSQL to read and sort the
webhook's whole backlog each time: about 3 ms per take-up with 3,000 waiting, growing with the
backlog, where the new one reads the few rows it takes.

On PostgreSQL the new index is built CONCURRENTLY (deliveries are written meanwhile; the build
scans the table, about a second per million deliveries on a small machine), then the old one is
dropped; elsewhere the index is replaced as usual.
"""

from django.db import migrations, models

OLD = models.Index(
    fields=["subscription", "next_attempt_at"],
    condition=models.Q(status="pending", enqueued_at__isnull=True),
    name="delivery_waiting_idx",
)
NEW = models.Index(
    fields=["subscription", "next_attempt_at", "id"],
    condition=models.Q(status="pending", enqueued_at__isnull=True),
    name="delivery_waiting_in_order_idx",
)
_CREATE = (
    "CREATE INDEX {concurrently} {name} ON deliveries_delivery "
    "(subscription_id, next_attempt_at{id}) "
    "WHERE status = 'pending' AND enqueued_at IS NULL"
)


def _replace(apps, schema_editor, *, build: models.Index, drop: models.Index) -> None:
    delivery = apps.get_model("deliveries", "Delivery")
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.remove_index(delivery, drop)
        schema_editor.add_index(delivery, build)
        return
    # CONCURRENTLY cannot run in a transaction: a caller's (a test migrating back and forth)
    # gets a plain build. A run that failed half-way may have left the index invalid.
    concurrently = "" if schema_editor.connection.in_atomic_block else "CONCURRENTLY"
    schema_editor.execute(f"DROP INDEX {concurrently} IF EXISTS {build.name}")
    schema_editor.execute(
        _CREATE.format(
            concurrently=concurrently,
            name=build.name,
            id=", id" if "id" in build.fields else "",
        )
    )
    schema_editor.execute(f"DROP INDEX {concurrently} IF EXISTS {drop.name}")


def forwards(apps, schema_editor):
    _replace(apps, schema_editor, build=NEW, drop=OLD)


def backwards(apps, schema_editor):
    _replace(apps, schema_editor, build=OLD, drop=NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0014_no_index_where_a_composite_one_begins"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="delivery", name=OLD.name),
                migrations.AddIndex(model_name="delivery", index=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
