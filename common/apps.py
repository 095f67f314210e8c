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


def session_configure(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Set up each new database session: on PostgreSQL, JIT compilation off unless
    ``DATABASE_JIT`` (``settings.py`` says why)."""
    if connection.vendor == "postgresql" and not settings.DATABASE_JIT:
        with connection.cursor() as cursor:
            cursor.execute("SET jit = off")
