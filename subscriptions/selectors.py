"""Reads of the subscriptions app."""

from __future__ import annotations

from .models import Subscription


def subscriptions_matching(*, school_id: int, event_type: str) -> list[Subscription]:
    """Active subscriptions of the school with a topic pattern matching ``event_type``."""
    candidates = Subscription.objects.filter(school_id=school_id, is_active=True).order_by("id")
    return [subscription for subscription in candidates if subscription.matches(event_type)]
