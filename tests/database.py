"""Helpers for tests that break the database connection or hold rows from another one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
from django.db import connection, transaction
from django.db.models import QuerySet


def connection_lose() -> None:
    """End this test's database session from another one, as a database restart does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    params = {k: v for k, v in connection.get_connection_params().items() if k != "context"}
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@contextlib.contextmanager
def rows_held_elsewhere(rows: QuerySet) -> Iterator[None]:
    """Inside the block, ``rows`` are locked (``FOR UPDATE``) by another worker's transaction,
    and this connection gives up on a lock after 2 s instead of waiting: code that waits for
    those rows fails rather than passing them over. Needs ``transaction=True``."""
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                list(rows.select_for_update())
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        yield
    finally:
        release.set()
        thread.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
