"""Drop the single-column indexes of the delivery's and the attempt's foreign keys: an index of
the model's Meta begins with each of them, and each index is written again at every one of a
delivery's updates. Only the indexes are dropped: the foreign-key constraints stay as they are
(altering the fields the usual way would drop and validate them again, scanning the tables)."""

import django.db.models.deletion
from django.db import migrations, models

# (table, index, column) as the earlier migrations created them.
INDEXES = [
    ("deliveries_delivery", "deliveries_delivery_event_id_ee0aa5a0", "event_id"),
    ("deliveries_delivery", "deliveries_delivery_school_id_1f2b6d9a", "school_id"),
    ("deliveries_delivery", "deliveries_delivery_subscription_id_d5d6da39", "subscription_id"),
    ("deliveries_deliveryattempt", "deliveries_deliveryattempt_delivery_id_85da7e15", "delivery_id"),
]


def drop(apps, schema_editor):
    for _table, index, _column in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{index}"')


def create(apps, schema_editor):
    for table, index, column in INDEXES:
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")')


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0013_delivery_retry_window_start'),
        ('events', '0011_event_data_search_index'),
        ('schools', '0006_labels_in_the_admins_language'),
        ('subscriptions', '0010_webhook_pause'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='delivery',
                    name='event',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='events.event', verbose_name='event'),
                ),
                migrations.AlterField(
                    model_name='delivery',
                    name='school',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='schools.school', verbose_name='school'),
                ),
                migrations.AlterField(
                    model_name='delivery',
                    name='subscription',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='subscriptions.subscription', verbose_name='webhook'),
                ),
                migrations.AlterField(
                    model_name='deliveryattempt',
                    name='delivery',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='deliveries.delivery', verbose_name='delivery'),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create)],
        ),
    ]
