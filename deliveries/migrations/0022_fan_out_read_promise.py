"""The fan-out request's promised read (``FanOutRequest.read_after_ms``): a nullable column
on a one-row table, added without rewriting anything. Releases before it neither write nor
read it; publishers of such a release keep asking after each commit, as they did."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0021_deliveries_sent_now"),
    ]

    operations = [
        migrations.AddField(
            model_name="fanoutrequest",
            name="read_after_ms",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
