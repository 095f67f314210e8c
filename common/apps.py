from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.backends.signals import connection_created


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
    ``DATABASE_JIT`` (``settings.py`` says why), and statements prepared where
    ``statements_prepare`` asked for it."""
    if connection.vendor != "postgresql":
        return
    if _prepare_threshold is not None:
        connection.connection.prepare_threshold = _prepare_threshold
    if not settings.DATABASE_JIT:
        with connection.cursor() as cursor:
            cursor.execute("SET jit = off")
