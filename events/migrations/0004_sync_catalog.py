from django.db import migrations

# The catalog this migration was written for; tests/events/test_catalog.py checks it against
# events.catalog, so a catalog change comes with a new migration like this one.
CATALOG_FINGERPRINT = "c3822958af10b85b"


def sync_catalog(apps, schema_editor):
    from events.services import event_types_sync

    event_types_sync(model=apps.get_model("events", "EventType"))


class Migration(migrations.Migration):
    dependencies = [("events", "0003_eventtype_shipped")]

    operations = [migrations.RunPython(sync_catalog, migrations.RunPython.noop)]
