"""The payload search index: a GIN index over every string and number value of an event's data
(``events/search.py``), for the delivery log's "payload contains" search.

Built CONCURRENTLY on PostgreSQL, so events are published while it builds (a few seconds per
hundred thousand events, and about as large as the data's text; see the README's "Search and
export"). Not built elsewhere: the embedded SQLite of ``make run`` searches without it.
"""

import django.contrib.postgres.indexes
from django.db import migrations, models

import events.search

INDEX = "event_data_search_idx"
CREATE = (
    "CREATE INDEX {concurrently} IF NOT EXISTS " + INDEX + " ON events_event USING gin "
    """(jsonb_to_tsvector('simple'::regconfig, data, '["string", "numeric"]'::jsonb))"""
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # An earlier run that failed half-way leaves an invalid index behind: build it again.
        schema_editor.execute(
            f"""DO $$ BEGIN
                IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                           WHERE c.relname = '{INDEX}' AND NOT i.indisvalid) THEN
                    EXECUTE 'DROP INDEX {INDEX}';
                END IF;
            END $$"""
        )
        # CONCURRENTLY cannot run in a transaction: a caller's (a test migrating back and
        # forth) gets a plain build.
        in_transaction = schema_editor.connection.in_atomic_block
        schema_editor.execute(CREATE.format(concurrently="" if in_transaction else "CONCURRENTLY"))


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        concurrently = "" if schema_editor.connection.in_atomic_block else "CONCURRENTLY"
        schema_editor.execute(f"DROP INDEX {concurrently} IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("events", "0010_labels_in_the_admins_language"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="event",
                    index=django.contrib.postgres.indexes.GinIndex(
                        events.search.PayloadVector(models.F("data")), name=INDEX
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
