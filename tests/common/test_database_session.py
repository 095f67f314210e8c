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
