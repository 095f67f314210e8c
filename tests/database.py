"""Helpers for tests that break the database connection, hold rows from another one, or need
many rows and the plan PostgreSQL reads them with."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from django.db import connection, models, transaction
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


def rows_clone(model: type[models.Model], pk: Any, count: int, varied: Mapping[str, str]) -> None:
    """Insert ``count`` copies of ``model``'s row ``pk`` in one statement; ``varied`` gives
    the columns that differ as SQL expressions of ``n`` (1 to ``count``), e.g. the id."""
    columns = [field.column for field in model._meta.concrete_fields]
    table, key = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT "  # noqa: S608 - names only
            + ", ".join(varied.get(column, f"r.{column}") for column in columns)
            + f" FROM {table} AS r, generate_series(1, %s) AS n WHERE r.{key} = %s",
            [count, pk],
        )


def rows_read(sql: str, params: list[Any], *, generic: bool = False) -> int:
    """The most rows any step of ``sql``'s plan read over all its loops, filtered out or not
    (``EXPLAIN ANALYZE``: the statement runs).

    ``generic``: by the plan PostgreSQL makes for any parameters (as it may keep for a
    statement a worker prepared, ``DATABASE_WORKER_PREPARE_THRESHOLD``), not for these ones.
    """

    removed = (
        "Rows Removed by Filter",
        "Rows Removed by Join Filter",
        "Rows Removed by Index Recheck",
    )

    def read(node: dict[str, Any]) -> Iterator[int]:
        # EXPLAIN gives the rows of one loop (their average): times the loops, the rows read.
        per_loop = node.get("Actual Rows", 0) + sum(node.get(key, 0) for key in removed)
        yield per_loop * node.get("Actual Loops", 1)
        for child in node.get("Plans", []):
            yield from read(child)

    if not generic:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            return max(read(cursor.fetchone()[0][0]["Plan"]))
    numbered = sql.replace("%s", "${}").format(*range(1, len(params) + 1))
    # A client-side cursor: the statement's own placeholders go to PREPARE as written, and the
    # arguments to EXECUTE as literals (PostgreSQL infers no type for a bound one there).
    connection.ensure_connection()
    with psycopg.ClientCursor(connection.connection) as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute("PREPARE rows_read_generic AS " + numbered)
        try:
            arguments = ", ".join(["%s"] * len(params))
            cursor.execute(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE rows_read_generic({arguments})",
                [str(p) if isinstance(p, str) else p for p in params],
            )
            return max(read(cursor.fetchone()[0][0]["Plan"]))
        finally:
            cursor.execute("DEALLOCATE rows_read_generic")
            cursor.execute("RESET plan_cache_mode")


@contextlib.contextmanager
def statements_prepared_early(*, any_values: bool = False) -> Iterator[None]:
    """Inside the block, this session prepares a statement the second time it runs it, as a
    worker's session does after ``DATABASE_WORKER_PREPARE_THRESHOLD`` runs; with
    ``any_values``, PostgreSQL also plans every prepared one for any values of its parameters
    (a generic plan), as it may keep for a worker. The statements prepared are let go after."""
    connection.ensure_connection()
    raw = connection.connection
    threshold = raw.prepare_threshold
    raw.prepare_threshold = 1
    if any_values:
        with connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
    try:
        yield
    finally:
        raw.prepare_threshold = threshold
        with connection.cursor() as cursor:
            if any_values:
                cursor.execute("RESET plan_cache_mode")
            cursor.execute("DEALLOCATE ALL")


class RowsFetched:
    """Rows of a table read so far in the block (``rows_fetched``)."""

    count = 0


@contextlib.contextmanager
def rows_fetched(model: type[models.Model]) -> Iterator[RowsFetched]:
    """How many rows of ``model``'s table the statements in the block read, by whatever plan
    and session settings they ran with: sequential scans and index fetches, from this
    transaction's statistics (``pg_stat_xact_user_tables``). Use inside a transaction."""

    def fetched() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) "
                "FROM pg_stat_xact_user_tables WHERE relid = %s::regclass",
                [model._meta.db_table],
            )
            return int(cursor.fetchone()[0])

    result = RowsFetched()
    before = fetched()
    yield result
    result.count = fetched() - before
