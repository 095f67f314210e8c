"""An index of the pending deliveries with a message out, where the sweeper looks for lost ones.

The sweeper looked for deliveries whose message was lost among every due delivery, walking
each one: 60 ms of every sweep (every 2 s) with 150,000 deliveries waiting behind a paused, a
broken and a busy webhook, growing with those backlogs. A partial index holds the deliveries
with a message out only: a queue's worth. (The waiting deliveries of webhooks with nothing in
flight are found through ``delivery_waiting_in_order_idx``, one descent per webhook.)

Built ``CONCURRENTLY`` on PostgreSQL (``common.indexes``).
"""

from django.db import migrations, models

from common.indexes import index_build, index_drop

INDEX = models.Index(
    fields=["enqueued_at"],
    condition=models.Q(status="pending", enqueued_at__isnull=False),
    name="delivery_messaged_idx",
)


def forwards(apps, schema_editor):
    index_build(schema_editor, apps.get_model("deliveries", "Delivery"), INDEX)


def backwards(apps, schema_editor):
    index_drop(schema_editor, apps.get_model("deliveries", "Delivery"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0016_send_tests_not_finished"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="delivery", index=INDEX)],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
