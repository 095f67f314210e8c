"""System checks for a deployment (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def shared_cache_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """The failure limits (API keys, admin logins) count in the default cache: one per process
    would multiply each limit by the number of web processes."""
    default: Any = settings.CACHES.get("default") or {}
    backend = str(default.get("BACKEND", ""))
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "The default cache is per process (DJANGO_CACHE_URL is not set).",
                hint=(
                    "Set DJANGO_CACHE_URL to a Redis database (redis://host:6379/1) so that "
                    "every web process counts failed API authentications and admin logins "
                    "together; otherwise each limit is multiplied by the number of processes."
                ),
                id="webhooks.W001",
            )
        ]
    return []
