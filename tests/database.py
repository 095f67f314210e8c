"""Helpers for tests that break the database connection."""

from __future__ import annotations

import psycopg
from django.db import connection


def connection_lose() -> None:
    """End this test's database session from another one, as a database restart does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    params = {k: v for k, v in connection.get_connection_params().items() if k != "context"}
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
