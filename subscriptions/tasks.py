"""Celery entry points of the subscriptions app."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services


@shared_task(name="subscriptions.auto_disable")
def auto_disable() -> None:
    """Disable webhooks that have failed for the whole configured period, and tell their admins."""
    services.subscriptions_auto_disable()


@shared_task(
    name="subscriptions.disabled_notify",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=10,
)
def disabled_notify(subscription_id: str, reason: str) -> None:
    """E-mail a disabled webhook's school admins (sent apart from the worker that disabled it)."""
    services.subscription_disabled_notify(subscription_id=subscription_id, reason=reason)
