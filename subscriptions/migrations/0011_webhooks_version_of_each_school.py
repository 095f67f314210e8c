"""Each school row carries a version of its webhooks as fan-out reads them, kept by triggers.

Fan-out reads a school's active webhooks for every batch of its events: one more round trip
in the batch's transaction, and the webhooks built again, on the path from a publish to its
first attempt. A worker process now keeps what it read, keyed by this version, which the
batch's read of its events returns with each event's school (``deliveries/services/fan_out.py``).

``schools_school.webhooks_version`` takes a new value from one sequence whenever a webhook of
the school is created, deleted, moved to another school or has a column fan-out reads changed
(``subscriptions.selectors.FAN_OUT_FIELDS``), by any means, the ORM, a bulk update or raw SQL;
a ``TRUNCATE`` of the webhooks gives every school a new one. Values never repeat (a sequence
does not go back with a rolled-back transaction), so a version names one state of one
school's webhooks. A migration that changes which columns fan-out reads must replace the
update trigger (a test compares them). The column is not a model field: only the database
writes it. Nothing on SQLite, where fan-out reads the webhooks every time.
"""

from django.db import migrations

WATCHED = (
    "id",
    "school_id",
    "is_active",
    "paused_at",
    "topics",
    "payload_filter",
    "profile",
    "content_type",
    "body_template",
)

CREATE = [
    "CREATE SEQUENCE IF NOT EXISTS schools_webhooks_version_seq",
    "ALTER TABLE schools_school ADD COLUMN IF NOT EXISTS webhooks_version bigint NOT NULL "
    "DEFAULT nextval('schools_webhooks_version_seq')",
    """
    CREATE OR REPLACE FUNCTION subscriptions_webhooks_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq')
            WHERE id = OLD.school_id;
        END IF;
        IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.school_id <> OLD.school_id) THEN
            UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq')
            WHERE id = NEW.school_id;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION subscriptions_webhooks_truncated() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq');
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER subscription_webhooks_added_or_removed "
    "AFTER INSERT OR DELETE ON subscriptions_subscription "
    "FOR EACH ROW EXECUTE FUNCTION subscriptions_webhooks_changed()",
    "CREATE TRIGGER subscription_webhooks_changed "
    "AFTER UPDATE OF {columns} ON subscriptions_subscription FOR EACH ROW "
    "WHEN (({old}) IS DISTINCT FROM ({new})) "
    "EXECUTE FUNCTION subscriptions_webhooks_changed()".format(
        columns=", ".join(WATCHED),
        old=", ".join(f"OLD.{column}" for column in WATCHED),
        new=", ".join(f"NEW.{column}" for column in WATCHED),
    ),
    "CREATE TRIGGER subscription_webhooks_truncated "
    "AFTER TRUNCATE ON subscriptions_subscription "
    "FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_webhooks_truncated()",
]

DROP = [
    "DROP TRIGGER IF EXISTS subscription_webhooks_truncated ON subscriptions_subscription",
    "DROP TRIGGER IF EXISTS subscription_webhooks_changed ON subscriptions_subscription",
    "DROP TRIGGER IF EXISTS subscription_webhooks_added_or_removed ON subscriptions_subscription",
    "DROP FUNCTION IF EXISTS subscriptions_webhooks_truncated()",
    "DROP FUNCTION IF EXISTS subscriptions_webhooks_changed()",
    "ALTER TABLE schools_school DROP COLUMN IF EXISTS webhooks_version",
    "DROP SEQUENCE IF EXISTS schools_webhooks_version_seq",
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("schools", "0006_labels_in_the_admins_language"),
        ("subscriptions", "0010_webhook_pause"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
