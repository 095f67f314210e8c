from django.db import migrations

# The catalog this migration was written for; tests/events/test_catalog.py checks it against
# events.catalog, so a catalog change comes with a new migration like this one. This one adds
# the optional fields the vendor profiles send (BrainCert's domain_id and tenant_id, eduMe's
# learner uuid and identifiers on enrollments, the courses of one enrollment, an identifier's id)
# and samples that show every vendor's fields.
CATALOG_FINGERPRINT = "6383030a83543689"


def sync_catalog(apps, schema_editor):
    from events.services import event_types_sync

    event_types_sync(model=apps.get_model("events", "EventType"))


class Migration(migrations.Migration):
    dependencies = [("events", "0008_delete_fanoutrequest")]

    operations = [migrations.RunPython(sync_catalog, migrations.RunPython.noop)]
