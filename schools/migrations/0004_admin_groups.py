from django.db import migrations


def admin_groups_create(apps, schema_editor):
    from schools.services import admin_groups_sync

    admin_groups_sync()


class Migration(migrations.Migration):
    """The "School admins" and "Support" groups with their permissions (schools/services.py)."""

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("schools", "0003_api_keys"),
        ("events", "0006_event_is_test"),
        ("subscriptions", "0002_admin_permissions"),
        ("deliveries", "0003_retrigger_permission"),
    ]

    operations = [migrations.RunPython(admin_groups_create, migrations.RunPython.noop)]
