import functools
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.backends.signals import connection_created
from psycopg.adapt import Loader


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Common"

    def ready(self) -> None:
        connection_created.connect(session_configure, dispatch_uid="common.session_configure")
        # Django has no hook for the alt text of its boolean icons; its list and read-only
        # field code look the function up in admin_list at each call, so this reaches both.
        from django.contrib.admin.templatetags import admin_list

        from common.admin_display import boolean_icon

        admin_list._boolean_icon = boolean_icon  # type: ignore[attr-defined]


_prepare_threshold: int | None = None


def statements_prepare(threshold: int) -> None:
    """In a process that runs the same statements over and over (a delivery worker): each
    PostgreSQL session it opens from now on prepares a statement once it has run ``threshold``
    times (psycopg's ``prepare_threshold``; 0: never, Django's default)."""
    global _prepare_threshold
    _prepare_threshold = threshold or None


def session_configure(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Set up each new database session: on PostgreSQL, JIT compilation off unless
    ``DATABASE_JIT`` (``settings.py`` says why), statements prepared where
    ``statements_prepare`` asked for it, and dates read by psycopg's compiled loader
    (``timestamptz_loader_register``)."""
    if connection.vendor != "postgresql":
        return
    timestamptz_loader_register(connection)
    if _prepare_threshold is not None:
        connection.connection.prepare_threshold = _prepare_threshold
    if not settings.DATABASE_JIT:
        with connection.cursor() as cursor:
            cursor.execute("SET jit = off")


def timestamptz_loader_register(connection: Any) -> None:
    """Read this session's ``timestamptz`` values with psycopg's compiled loader.

    Django's own loader (``SpecificTzLoader``) subclasses psycopg's pure-Python one, so every
    date Django reads went through Python's parsing: 3.9 µs a value against 1.5 µs, and a
    twentieth of a delivery worker's Python was spent there. This one parses with the loader
    psycopg registers for the type (its C one with ``psycopg[binary]``) and gives the value
    Django's zone exactly as Django's does (``timezone``, which Django's ``create_cursor``
    compares before putting its own back).
    """
    connection.connection.adapters.register_loader(
        _TIMESTAMPTZ_OID, _timestamptz_loader(connection.timezone)
    )


_TIMESTAMPTZ_OID = 1184  # psycopg.postgres.types["timestamptz"].oid


@functools.cache
def _timestamptz_loader(timezone: Any) -> type[Loader]:
    """The loader class for ``timezone``, made once: psycopg keeps every class registered
    for the life of the process (a class per session would grow with each)."""
    from psycopg import adapters
    from psycopg.pq import Format

    return type(
        "TimestamptzLoader",
        (_TimestamptzLoader,),
        {"timezone": timezone, "parser": adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)},
    )


class _TimestamptzLoader(Loader):
    """A ``timestamptz`` loader parsing with ``parser``, in the zone ``timezone`` (None:
    naive, as Django's own loader does without time zone support)."""

    timezone: Any = None
    parser: Any = None

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._parse = self.parser(oid, context).load

    def load(self, data: Any) -> Any:
        return self._parse(data).replace(tzinfo=self.timezone)
