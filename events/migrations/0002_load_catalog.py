from django.db import migrations


def load_catalog(apps, schema_editor):
    from events.services import event_types_sync

    event_types_sync(model=apps.get_model("events", "EventType"))


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]

    operations = [migrations.RunPython(load_catalog, migrations.RunPython.noop)]
