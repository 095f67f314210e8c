"""Celery entry points of the events app, run by beat: each calls one service; safe to repeat."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="events.scheduled_events_publish_due")
def scheduled_events_publish_due() -> None:
    """Publish the scheduled events whose time has come (each exactly once)."""
    services.scheduled_events_publish_due()


@shared_task(name="events.daily_events_publish_due")
def daily_events_publish_due() -> None:
    """Publish each school's daily cron.midnight event once its time has come."""
    services.daily_events_publish_due()
