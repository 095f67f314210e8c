"""Celery entry points of the subscriptions app."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="subscriptions.auto_disable")
def auto_disable() -> None:
    """Disable webhooks that have failed for the whole configured period, and tell their admins."""
    services.subscriptions_auto_disable()
