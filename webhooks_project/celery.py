"""The Celery application: configured from Django settings (``CELERY_*``), tasks from each app."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")

# The embedded broker used when no CELERY_BROKER_URL is set (see fsbroker.py).
TRANSPORT_ALIASES["webhooksfs"] = "webhooks_project.fsbroker:Transport"

app = Celery("webhooks_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _database_connections_refresh(**kwargs: Any) -> None:
    """Give each task what Django gives each request: connections past their CONN_MAX_AGE or
    broken by an error are replaced, the others are health-checked and reused."""
    from django.db import close_old_connections

    close_old_connections()
