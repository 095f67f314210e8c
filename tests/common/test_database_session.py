"""What each new database session is set up with (common/apps.py)."""

import contextlib
from collections.abc import Iterator

import pytest
from django.db import connections

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def _session() -> Iterator:
    """A new session of the test database, apart from the test's own (in autocommit)."""
    wrapper = connections.create_connection("default")
    try:
        with wrapper.cursor() as cursor:
            yield cursor
    finally:
        wrapper.close()


@contextlib.contextmanager
def _jit_on_for_new_sessions() -> Iterator[None]:
    """New sessions of the test database start with ``jit = on``, whatever the server says."""
    with _session() as cursor:
        cursor.execute("SELECT current_database()")
        name = cursor.fetchone()[0]
        cursor.execute(f'ALTER DATABASE "{name}" SET jit = on')
    try:
        yield
    finally:
        with _session() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET jit')


def _new_session_jit() -> str:
    with _session() as cursor:
        cursor.execute("SHOW jit")
        return cursor.fetchone()[0]


def test_a_new_session_compiles_no_query_just_in_time():
    with _jit_on_for_new_sessions():
        assert _new_session_jit() == "off"


def test_the_database_decides_when_jit_is_wanted(settings):
    settings.DATABASE_JIT = True

    with _jit_on_for_new_sessions():
        assert _new_session_jit() == "on"


def _prepared_after(runs: int) -> list[str]:
    """The statements a new session holds prepared after running one query ``runs`` times."""
    with _session() as cursor:
        for number in range(runs):
            cursor.execute("SELECT %s::int + 1", [number])
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@contextlib.contextmanager
def _as_a_worker() -> Iterator[None]:
    """This process set up as a Celery worker is at its start (``worker_init``, before its
    pool), then set back as a web process."""
    from common.apps import statements_prepare
    from webhooks_project.celery import _statements_prepare

    _statements_prepare()
    try:
        yield
    finally:
        statements_prepare(0)


def test_a_web_process_plans_each_statement_anew():
    assert _prepared_after(20) == []


def test_a_worker_prepares_a_statement_once_it_has_run_often(settings):
    settings.DATABASE_WORKER_PREPARE_THRESHOLD = 3

    with _as_a_worker():
        assert _prepared_after(3) == []
        assert _prepared_after(4) == ["SELECT $1::int + 1"]


def test_a_worker_can_be_told_to_prepare_nothing(settings):
    settings.DATABASE_WORKER_PREPARE_THRESHOLD = 0

    with _as_a_worker():
        assert _prepared_after(20) == []


def test_a_session_reads_dates_with_psycopgs_compiled_loader_in_djangos_zone():
    """Django's own ``timestamptz`` loader parses in Python; each session uses the loader
    psycopg registered for the type (its C one with ``psycopg[binary]``), with the values
    exactly as Django's gave them: in Django's zone (the same ``tzinfo``), NULL as None, any
    offset turned into that zone. Django's cursors keep it rather than putting theirs back."""
    import datetime as dt

    from psycopg import adapters
    from psycopg.postgres import types
    from psycopg.pq import Format

    oid = types["timestamptz"].oid
    wrapper = connections.create_connection("default")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute(
                "SELECT '2026-01-01 12:00:00.25+05'::timestamptz, NULL::timestamptz, "
                "'0001-01-01 00:00+00'::timestamptz"
            )
            assert cursor.fetchone() == (
                dt.datetime(2026, 1, 1, 7, 0, 0, 250000, tzinfo=dt.UTC),
                None,
                dt.datetime(1, 1, 1, tzinfo=dt.UTC),
            )
            loader = cursor.cursor.adapters.get_loader(oid, Format.TEXT)
        assert loader.parser is adapters.get_loader(oid, Format.TEXT)
        assert loader.timezone is wrapper.timezone is dt.UTC
        again = connections.create_connection("default")
        try:
            with again.cursor() as cursor:  # one class for every session, not one each
                assert cursor.cursor.adapters.get_loader(oid, Format.TEXT) is loader
        finally:
            again.close()
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT now()")
            assert cursor.fetchone()[0].tzinfo is dt.UTC
    finally:
        wrapper.close()
