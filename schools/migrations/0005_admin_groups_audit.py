from django.db import migrations


def admin_groups_update(apps, schema_editor):
    from schools.services import admin_groups_sync

    admin_groups_sync()


class Migration(migrations.Migration):
    """School admins and support staff read the audit trail (schools/services.py)."""

    dependencies = [
        ("schools", "0004_admin_groups"),
        ("audit", "0001_initial"),
        ("deliveries", "0009_delivery_resume_attempt_at"),
    ]

    operations = [migrations.RunPython(admin_groups_update, migrations.RunPython.noop)]
