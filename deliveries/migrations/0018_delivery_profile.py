"""The delivery profile a delivery's body was rendered in, which signs each of its attempts.

A webhook moved to another profile kept its waiting deliveries' bodies but sent them with the
new profile's headers (an Edusign HMAC and event type over a standard envelope). The profile
of the time is not recorded for the existing rows: they take their webhook's profile of now,
which is the one they were rendered in unless it changed since. The default is stored once
(PostgreSQL 11+), so only the rows of webhooks with a vendor profile are written.
"""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def profiles_copy(apps, schema_editor):
    delivery = apps.get_model("deliveries", "Delivery")
    subscription = apps.get_model("subscriptions", "Subscription")
    vendor = subscription.objects.exclude(profile="standard")
    delivery.objects.filter(subscription__in=vendor.values("pk")).update(
        profile=Subquery(vendor.filter(pk=OuterRef("subscription_id")).values("profile")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0017_deliveries_with_a_message_out"),
        ("subscriptions", "0004_subscription_profile"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="profile",
            field=models.CharField(
                db_default="standard",
                default="standard",
                editable=False,
                max_length=16,
                verbose_name="delivery profile",
            ),
        ),
        migrations.RunPython(profiles_copy, migrations.RunPython.noop, elidable=True),
    ]
