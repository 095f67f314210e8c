"""The database itself deletes a delivery's attempts, a webhook's or event's deliveries and a
webhook's endpoint state (ON DELETE CASCADE), not only Django's collector.

Django deletes the children first, then the parent; an attempt a worker records in between
(its answer arrived while the webhook was being deleted) made the parent's delete fail with a
foreign-key violation. With the cascade in the database it goes with its parent.
"""

from django.db import migrations

CASCADES = [
    # (table, column, referenced table)
    ("deliveries_deliveryattempt", "delivery_id", "deliveries_delivery"),
    ("deliveries_delivery", "subscription_id", "subscriptions_subscription"),
    ("deliveries_delivery", "event_id", "events_event"),
    ("deliveries_endpointstate", "subscription_id", "subscriptions_subscription"),
]


def _sql(on_delete: str) -> str:
    statements = []
    for table, column, referenced in CASCADES:
        statements.append(
            f"""
DO $$
DECLARE name text;
BEGIN
  SELECT c.conname INTO name FROM pg_constraint AS c
    JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
   WHERE c.contype = 'f' AND c.conrelid = '{table}'::regclass
     AND c.confrelid = '{referenced}'::regclass AND a.attname = '{column}';
  EXECUTE format('ALTER TABLE {table} DROP CONSTRAINT %I', name);
  EXECUTE format('ALTER TABLE {table} ADD CONSTRAINT %I FOREIGN KEY ({column}) '
                 'REFERENCES {referenced} (id) {on_delete} DEFERRABLE INITIALLY DEFERRED', name);
END $$;"""
        )
    return "\n".join(statements)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_sql("ON DELETE CASCADE"), None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_sql(""), None)


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0007_heartbeat"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
