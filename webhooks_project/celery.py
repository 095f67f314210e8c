"""The Celery application: configured from Django settings (``CELERY_*``), tasks from each app."""

from __future__ import annotations

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")

# The embedded broker used when no CELERY_BROKER_URL is set (see fsbroker.py).
TRANSPORT_ALIASES["webhooksfs"] = "webhooks_project.fsbroker:Transport"

app = Celery("webhooks_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
