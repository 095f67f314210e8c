"""An index of the Send Tests not finished, which the sweeper fails when their process stopped.

The sweeper looked for them among every pending delivery created more than five minutes ago:
20 ms of every sweep (every 2 s) with 50,000 deliveries waiting for a broken receiver, growing
with that backlog. A partial index holds the pending Send Tests only, a handful at most.

Built ``CONCURRENTLY`` on PostgreSQL (``common.indexes``).
"""

from django.db import migrations, models

from common.indexes import index_build, index_drop

INDEX = models.Index(
    fields=["created_at"],
    condition=models.Q(is_test=True, status="pending"),
    name="delivery_test_pending_idx",
)


def forwards(apps, schema_editor):
    index_build(schema_editor, apps.get_model("deliveries", "Delivery"), INDEX)


def backwards(apps, schema_editor):
    index_drop(schema_editor, apps.get_model("deliveries", "Delivery"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0015_waiting_deliveries_in_the_order_they_go"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="delivery", index=INDEX)],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
