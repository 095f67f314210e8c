"""Celery entry points: load ids, call one service, return. Each is safe to run twice.

A task that meets an unreachable database or broker (a restart, a failover) is retried within
seconds rather than left to the sweeper; nothing it did is lost, because every step is claimed
and recorded in the database.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from . import services
from .services.dispatch import deliveries_dispatch, dispatcher_drain

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, BrokerError)
_RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 1,
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 30,
}


@shared_task(name="deliveries.event_fan_out", **_RETRY)
def event_fan_out(event_id: str) -> None:
    """Legacy: one event's fan-out, as releases before coalesced fan-out sent it. Still
    accepted so that messages queued by them are not lost; see the README's upgrade notes."""
    services.event_fan_out(event_id=event_id)


@shared_task(name="deliveries.events_fan_out", **_RETRY)
def events_fan_out() -> None:
    """Turn every event awaiting fan-out into deliveries, a batch at a time, and send the first
    ones from this worker at once."""
    services.events_fan_out_pending(dispatch=True)


@shared_task(name="deliveries.deliver", **_RETRY)
def deliver(delivery_ids: list[str]) -> None:
    """Send each delivery that is due, unclaimed and within its webhook's limits (returns once
    they are in flight; this worker records the answers as they come)."""
    deliveries_dispatch(delivery_ids=delivery_ids)


@shared_task(name="deliveries.sweep", **_RETRY)
def sweep() -> None:
    """Re-drive events and deliveries whose task message was lost; probe broken webhooks."""
    services.deliveries_sweep()


# The prune stops this long before the task's soft time limit, between two batches.
PRUNE_MARGIN_SECONDS = 15.0


@shared_task(name="deliveries.prune", **_RETRY)
def prune() -> None:
    """Delete final deliveries older than ``WEBHOOKS_RETENTION_DAYS`` and the events left
    without deliveries, for at most the task's time limit minus a margin; while more remains
    (the first prune after an upgrade, or after the retention was lowered) it sends itself
    again, so a backlog goes in one run of back-to-back tasks instead of one slice an hour."""
    seconds = max(1.0, settings.CELERY_TASK_SOFT_TIME_LIMIT - PRUNE_MARGIN_SECONDS)
    result = services.deliveries_prune(
        older_than_days=settings.WEBHOOKS_RETENTION_DAYS, seconds=seconds
    )
    logger.info(
        "Pruned %s deliveries and %s events older than %s days%s",
        result.deliveries,
        result.events,
        settings.WEBHOOKS_RETENTION_DAYS,
        "" if result.finished else "; more remain, continuing",
    )
    if not result.finished:
        prune.apply_async()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _deliveries_in_flight_finish(**kwargs: Any) -> None:
    """On a warm shutdown, let the deliveries this process sent off be answered and recorded
    (those that are not are sent again when their lease runs out)."""
    dispatcher_drain(timeout=settings.WEBHOOKS_TIMEOUT_SECONDS + 5)
