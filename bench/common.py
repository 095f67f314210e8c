"""What the in-process benches share: their environment, on a database of their own, and the
million generated deliveries the list and search benches measure."""

from __future__ import annotations

import os
import time
import uuid

from bench.deliveries import _database_create


def environment_in_process(*, variable: str, default_url: str) -> str:
    """Set the environment of a bench that runs Django in its own process, on the database
    ``variable`` names (``default_url`` when unset), created if missing; return that URL."""
    url = os.environ.get(variable, default_url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"webhooks-bench-{uuid.uuid4().hex[:8]}")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault(
        "WEBHOOKS_ENCRYPTION_KEYS", "vV4DqoQqzgOcdG2Ct1f2vuL8K3Mqb1fNoOb4W4FqcZQ="
    )
    os.environ["DJANGO_SETTINGS_MODULE"] = "webhooks_project.settings"
    _database_create(url)
    return url


def deliveries_ensure(rows: int) -> None:
    """At least ``rows`` deliveries in the (migrated) database, generated once and kept for
    later runs, and fresh planner statistics."""
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM deliveries_delivery")
        existing = cursor.fetchone()[0]
    if existing < rows:
        print(f"Generating {rows - existing:,} deliveries (once; kept for later runs)…")
        started = time.monotonic()
        call_command("deliveries_generate", count=rows - existing)
        print(f"  generated in {time.monotonic() - started:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_event")
        cursor.execute("ANALYZE deliveries_delivery")
