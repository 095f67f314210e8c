"""A delivery's replay number: 0 for fan-out's, n for the n-th replay of the event to the webhook.

The unique constraint becomes (event, subscription, replay_number). On PostgreSQL the new unique
index is built CONCURRENTLY (reads and writes go on meanwhile; about 1-2 s per million
deliveries on a small machine), then swapped in for the old constraint in one short lock;
elsewhere the constraint is replaced as usual. The new column's default is not written to the
existing rows (PostgreSQL 11+ stores it once).
"""

from django.db import migrations, models, transaction

OLD = models.UniqueConstraint(
    fields=("event", "subscription"), name="delivery_one_per_event_and_subscription"
)
NEW = models.UniqueConstraint(
    fields=("event", "subscription", "replay_number"),
    name="delivery_one_per_event_and_subscription",
)
BUILDING = "delivery_event_subscription_replay_uniq"
FIELD = models.PositiveIntegerField(
    default=0, db_default=0, editable=False, verbose_name="replay number"
)


def column_add(apps, schema_editor):
    """The column, unless a run that failed later (the migration is not atomic) added it."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE deliveries_delivery ADD COLUMN IF NOT EXISTS replay_number integer "
            "DEFAULT 0 NOT NULL CONSTRAINT deliveries_delivery_replay_number_check "
            "CHECK (replay_number >= 0)"
        )
        return
    delivery = apps.get_model("deliveries", "Delivery")
    with schema_editor.connection.cursor() as cursor:
        columns = schema_editor.connection.introspection.get_table_description(
            cursor, delivery._meta.db_table
        )
    if "replay_number" not in {column.name for column in columns}:
        schema_editor.add_field(delivery, _field())


def _field() -> models.Field:
    """The column's field, for a historical model that does not have it yet (or any more)."""
    field = FIELD.clone()
    field.set_attributes_from_name("replay_number")
    return field


def column_remove(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE deliveries_delivery DROP COLUMN IF EXISTS replay_number")
        return
    schema_editor.remove_field(apps.get_model("deliveries", "Delivery"), _field())


def forwards(apps, schema_editor):
    delivery = apps.get_model("deliveries", "Delivery")
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.remove_constraint(delivery, OLD)
        schema_editor.add_constraint(delivery, NEW)
        return
    # CONCURRENTLY cannot run in a transaction: a caller's (a test migrating back and forth)
    # gets a plain build.
    concurrently = "" if schema_editor.connection.in_atomic_block else "CONCURRENTLY"
    schema_editor.execute(f"DROP INDEX {concurrently} IF EXISTS {BUILDING}")  # a failed run
    schema_editor.execute(
        f"CREATE UNIQUE INDEX {concurrently} {BUILDING} "
        "ON deliveries_delivery (event_id, subscription_id, replay_number)"
    )
    with transaction.atomic(using=schema_editor.connection.alias):
        schema_editor.execute(
            "ALTER TABLE deliveries_delivery DROP CONSTRAINT delivery_one_per_event_and_subscription"
        )
        schema_editor.execute(
            "ALTER TABLE deliveries_delivery ADD CONSTRAINT delivery_one_per_event_and_subscription "
            f"UNIQUE USING INDEX {BUILDING}"
        )


def backwards(apps, schema_editor):
    delivery = apps.get_model("deliveries", "Delivery")
    # Only possible while no event was replayed (the old constraint would not hold).
    schema_editor.remove_constraint(delivery, NEW)
    schema_editor.add_constraint(delivery, OLD)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0011_endpoint_state_and_delivery_labels"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(model_name="delivery", name="replay_number", field=FIELD)
            ],
            database_operations=[migrations.RunPython(column_add, column_remove)],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="delivery", name="delivery_one_per_event_and_subscription"
                ),
                migrations.AddConstraint(model_name="delivery", constraint=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
