"""Reads of the deliveries app."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Prefetch, QuerySet

from events.models import Event

from .models import Delivery, DeliveryAttempt, DeliveryStatus


def delivery_attempts(*, delivery_id: uuid.UUID) -> QuerySet[DeliveryAttempt]:
    """The attempts of a delivery, first to last."""
    return DeliveryAttempt.objects.filter(delivery_id=delivery_id).order_by("number")


def deliveries_for_event(*, event_id: uuid.UUID) -> QuerySet[Delivery]:
    """The deliveries an event produced, with their subscriptions."""
    return (
        Delivery.objects.filter(event_id=event_id)
        .select_related("subscription")
        .defer("body")
        .order_by("created_at")
    )


def deliveries_for_school(*, school_id: int) -> QuerySet[Delivery]:
    """A school's deliveries for listing (the body is not loaded)."""
    return Delivery.objects.filter(school_id=school_id).defer("body")


def delivery_with_attempts(*, school_id: int) -> QuerySet[Delivery]:
    """A school's deliveries with their attempts, for one delivery's detail."""
    return Delivery.objects.filter(school_id=school_id).prefetch_related(
        Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
    )


def delivery_backlog(*, now: dt.datetime) -> tuple[float, int]:
    """Seconds the oldest due, unclaimed delivery has waited, and how many events await fan-out
    (an old one means workers are not consuming)."""
    oldest = (
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
            leased_until__isnull=True,
            is_test=False,
        )
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    lag = (now - oldest).total_seconds() if oldest else 0.0
    waiting = Event.objects.filter(fanned_out_at__isnull=True, created_at__lt=now).count()
    return max(lag, 0.0), waiting
