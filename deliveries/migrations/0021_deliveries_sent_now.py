"""An index of the deliveries sent now by hand, which hold their webhook's slots until taken up.

A claim counts them with the webhook's attempts in flight (``deliveries/services/claim.py``):
a "send now" takes the slots that were free, and the automatic deliveries claimed before a
worker takes it up must not take the same slots. The claim reads them for each webhook it
claims for; a partial index holds them only, a handful at most, whatever the webhook's backlog.

Built ``CONCURRENTLY`` on PostgreSQL (``common.indexes``).
"""

from django.db import migrations, models

from common.indexes import index_build, index_drop

INDEX = models.Index(
    fields=["subscription"],
    condition=models.Q(status="pending", next_trigger="manual"),
    name="delivery_sent_now_idx",
)


def forwards(apps, schema_editor):
    index_build(schema_editor, apps.get_model("deliveries", "Delivery"), INDEX)


def backwards(apps, schema_editor):
    index_drop(schema_editor, apps.get_model("deliveries", "Delivery"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0020_label_of_attempts_sent_in_turn"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="delivery", index=INDEX)],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
