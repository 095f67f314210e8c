"""Each school row carries a version of its webhooks as fan-out reads them, kept by triggers.

Fan-out reads a school's active webhooks for every batch of its events: one more round trip
in the batch's transaction, and the webhooks built again, on the path from a publish to its
first attempt. A worker process now keeps what it read, keyed by this version, which the
batch's read of its events returns with each event's school (``deliveries/services/fan_out.py``).

``schools_school.webhooks_version`` takes a new value from one sequence whenever a webhook of
the school is created, deleted, moved to another school or has a column fan-out reads changed
(``subscriptions.selectors.FAN_OUT_FIELDS``), by any means, the ORM, a bulk update or raw SQL;
a ``TRUNCATE`` of the webhooks gives every school a new one. The triggers run once per
statement, so a school's deletion of its thousands of webhooks changes its row once. Values
never repeat (a sequence does not go back with a rolled-back transaction, nor when this
migration is undone), so a version names one state of one school's webhooks; a worker
process forgets what it kept whenever it connects to the database anew (a restore, a
fail-over). A migration that changes which columns fan-out reads must replace the update
trigger's function (a test compares them). The column is not a model field: only the database
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

COLUMNS_CHANGED = " OR ".join(f"o.{column} IS DISTINCT FROM n.{column}" for column in WATCHED)

CREATE = [
    # Fail rather than hold every publish and sign-in behind a long wait for a lock (run
    # `migrate` again); the webhooks table is locked first, as a webhook's edit locks it
    # before the school's row.
    "SET LOCAL lock_timeout = '10s'",
    "LOCK TABLE subscriptions_subscription IN SHARE ROW EXCLUSIVE MODE",
    "CREATE SEQUENCE IF NOT EXISTS schools_webhooks_version_seq",
    "ALTER TABLE schools_school ADD COLUMN IF NOT EXISTS webhooks_version bigint NOT NULL "
    "DEFAULT nextval('schools_webhooks_version_seq')",
    # One statement's changes, each school's row once, in the order of their ids.
    """
    CREATE OR REPLACE FUNCTION subscriptions_webhooks_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq')
            WHERE id IN (SELECT school_id FROM new_rows);
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq')
            WHERE id IN (SELECT school_id FROM old_rows);
        ELSE
            UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq')
            WHERE id IN (
                SELECT o.school_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE COLUMNS_CHANGED
                UNION
                SELECT n.school_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE COLUMNS_CHANGED
            );
        END IF;
        RETURN NULL;
    END
    $$
    """.replace("COLUMNS_CHANGED", COLUMNS_CHANGED),
    """
    CREATE OR REPLACE FUNCTION subscriptions_webhooks_truncated() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE schools_school SET webhooks_version = nextval('schools_webhooks_version_seq');
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER subscription_webhooks_added AFTER INSERT ON subscriptions_subscription "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION subscriptions_webhooks_changed()",
    "CREATE TRIGGER subscription_webhooks_removed AFTER DELETE ON subscriptions_subscription "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION subscriptions_webhooks_changed()",
    "CREATE TRIGGER subscription_webhooks_changed AFTER UPDATE ON subscriptions_subscription "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION subscriptions_webhooks_changed()",
    "CREATE TRIGGER subscription_webhooks_truncated "
    "AFTER TRUNCATE ON subscriptions_subscription "
    "FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_webhooks_truncated()",
]

# The sequence stays when the migration is undone: applied again, it goes on from where it
# was, so a version a worker process kept cannot come back with other webhooks.
DROP = [
    "DROP TRIGGER IF EXISTS subscription_webhooks_truncated ON subscriptions_subscription",
    "DROP TRIGGER IF EXISTS subscription_webhooks_changed ON subscriptions_subscription",
    "DROP TRIGGER IF EXISTS subscription_webhooks_removed ON subscriptions_subscription",
    "DROP TRIGGER IF EXISTS subscription_webhooks_added ON subscriptions_subscription",
    "DROP FUNCTION IF EXISTS subscriptions_webhooks_truncated()",
    "DROP FUNCTION IF EXISTS subscriptions_webhooks_changed()",
    "ALTER TABLE schools_school DROP COLUMN IF EXISTS webhooks_version",
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
