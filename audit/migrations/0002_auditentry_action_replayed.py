"""A new audit action: events replayed to a webhook (a label change, no database work)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("webhook.created", "Webhook created"),
                    ("webhook.changed", "Webhook changed"),
                    ("webhook.deleted", "Webhook deleted"),
                    ("webhook.disabled", "Webhook disabled"),
                    ("webhook.enabled", "Webhook re-enabled"),
                    ("secret.revealed", "Signing secret revealed"),
                    ("secret.rotated", "Signing secret rotated"),
                    ("delivery.retriggered", "Delivery sent again"),
                    ("deliveries.recovered", "Failed deliveries recovered"),
                    ("deliveries.replayed", "Events replayed"),
                    ("api_key.created", "API key created"),
                    ("api_key.revoked", "API key revoked"),
                ],
                max_length=40,
                verbose_name="action",
            ),
        ),
    ]
