"""Celery entry points: load ids, call one service, return. Each is safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(name="deliveries.event_fan_out")
def event_fan_out(event_id: str) -> None:
    """Legacy: one event's fan-out, as releases before coalesced fan-out sent it. Still
    accepted so that messages queued by them are not lost; see the README's upgrade notes."""
    services.event_fan_out(event_id=event_id)


@shared_task(name="deliveries.events_fan_out")
def events_fan_out() -> None:
    """Turn every event awaiting fan-out into deliveries, a batch at a time."""
    services.events_fan_out_pending()


@shared_task(name="deliveries.deliver")
def deliver(delivery_ids: list[str]) -> None:
    """Make the next attempt of each delivery that is due and unclaimed."""
    services.deliveries_attempt(delivery_ids=delivery_ids)


@shared_task(name="deliveries.sweep")
def sweep() -> None:
    """Re-drive events and deliveries whose task message was lost."""
    services.deliveries_sweep()


@shared_task(name="deliveries.prune")
def prune() -> None:
    """Delete final deliveries older than ``WEBHOOKS_RETENTION_DAYS``."""
    services.deliveries_prune(older_than_days=settings.WEBHOOKS_RETENTION_DAYS)
