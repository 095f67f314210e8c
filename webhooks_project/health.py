"""``GET /health/``: is this deployment able to deliver? For load balancers and monitoring."""

from __future__ import annotations

from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from deliveries.selectors import delivery_backlog


def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker answer and due deliveries are being picked up;
    503 otherwise, with what is wrong. Reveals counts only, nothing about any school."""
    checks: dict[str, object] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
        lag, awaiting = delivery_backlog(now=timezone.now())
        checks["oldest_due_delivery_seconds"] = round(lag, 1)
        checks["events_awaiting_fan_out"] = awaiting
        if lag > settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS:
            checks["deliveries"] = "due deliveries are not being picked up: are workers running?"
            healthy = False
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        healthy = False
    try:
        with current_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
        healthy = False
    checks["status"] = "ok" if healthy else "unhealthy"
    return JsonResponse(checks, status=200 if healthy else 503)
