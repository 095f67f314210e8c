"""What each new database session is set up with (common/apps.py)."""

import pytest
from django.db import connections

pytestmark = pytest.mark.django_db


def _new_session_setting(name: str) -> str:
    wrapper = connections.create_connection("default")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute(f"SHOW {name}")
            return cursor.fetchone()[0]
    finally:
        wrapper.close()


def _server_default(name: str) -> str:
    wrapper = connections.create_connection("default")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT reset_val FROM pg_settings WHERE name = %s", [name])
            return cursor.fetchone()[0]
    finally:
        wrapper.close()


def test_a_new_session_compiles_no_query_just_in_time():
    assert _new_session_setting("jit") == "off"


def test_the_server_decides_when_jit_is_wanted(settings):
    settings.DATABASE_JIT = True

    assert _new_session_setting("jit") == _server_default("jit")
