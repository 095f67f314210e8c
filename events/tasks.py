"""Celery entry points of the events app, run by beat: each calls one service; safe to repeat.

Beat runs them every few seconds. While the database is unreachable (a restart, a failover)
a run logs one warning and leaves its work to the next run: each event is published in a
transaction of its own, under a row or key that makes it once only, so a run cut short has
published nothing half-way and the next one publishes the rest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _left_to_the_next_run(work: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        logger.warning("The database is unreachable; %s wait for the next run: %s", work, exc)


@shared_task(name="events.scheduled_events_publish_due")
def scheduled_events_publish_due() -> None:
    """Publish the scheduled events whose time has come (each exactly once)."""
    with _left_to_the_next_run("scheduled events"):
        services.scheduled_events_publish_due()


@shared_task(name="events.daily_events_publish_due")
def daily_events_publish_due() -> None:
    """Publish each school's daily cron.midnight event once its time has come."""
    with _left_to_the_next_run("daily events"):
        services.daily_events_publish_due()
