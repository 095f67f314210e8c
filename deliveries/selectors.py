"""Reads of the deliveries app."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from .models import Delivery, DeliveryAttempt


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
