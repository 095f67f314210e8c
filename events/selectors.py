"""Reads of the events app."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import QuerySet

from .models import Event, EventType


def events_awaiting_fan_out(*, created_before: dt.datetime, limit: int) -> list[uuid.UUID]:
    """Ids of events created before ``created_before`` that were never fanned out, oldest first."""
    return list(
        Event.objects.filter(fanned_out_at__isnull=True, created_at__lt=created_before)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )


def events_visible(*, school_id: int | None) -> QuerySet[Event]:
    """Published events (not Send Test samples) of a school, or of every school for None."""
    queryset = Event.objects.filter(is_test=False).select_related("school")
    if school_id is not None:
        queryset = queryset.filter(school_id=school_id)
    return queryset


def event_types_catalog() -> QuerySet[EventType]:
    """The catalog, grouped."""
    return EventType.objects.order_by("group", "key")
