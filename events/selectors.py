"""Reads of the events app."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from django.core.cache import caches
from django.db.models import QuerySet

from schools.models import School

from .models import EVENT_TYPE_KEY_PATTERN, Event, EventType, ScheduledEvent


def event_type_for_publish(key: str) -> EventType | None:
    """The event type ``key`` (its key, deprecated flag and schema), or None if there is none.

    Read on every published event, so kept per process for ``WEBHOOKS_LOOKUP_CACHE_SECONDS``;
    saving or deleting a type drops this process's copy at once (``events.signals``). Unknown
    keys are not kept: a type added in the admin can be published right away.
    """
    if not re.fullmatch(EVENT_TYPE_KEY_PATTERN, key):
        return None  # not a key the catalog can hold
    lookups = caches["lookups"]
    cache_key = f"event-type:{key}"
    event_type = lookups.get(cache_key)
    if event_type is None:
        event_type = (
            EventType.objects.filter(key=key).only("key", "deprecated", "json_schema").first()
        )
        if event_type is not None:
            lookups.set(cache_key, event_type)
    return event_type


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


def event_types_catalog(*, include_deprecated: bool = True) -> QuerySet[EventType]:
    """The event types in the database, by group then key (what the reference page shows)."""
    types = EventType.objects.order_by("group", "key")
    return types if include_deprecated else types.filter(deprecated=False)


def scheduled_event_get(
    *, school: School, key: str | None = None, scheduled_event_id: uuid.UUID | str | None = None
) -> ScheduledEvent:
    """One of ``school``'s scheduled events, by the platform's key or by id.

    Raises ``ScheduledEvent.DoesNotExist`` when the school has none with that key or id (another
    school's is never returned), and ``ValueError`` unless exactly one of the two is given.
    """
    events = ScheduledEvent.objects.filter(school=school).select_related("school", "event")
    if key is not None and scheduled_event_id is None:
        return events.get(key=key)
    if scheduled_event_id is not None and key is None:
        return events.get(pk=scheduled_event_id)
    raise ValueError("Give a key or an id.")


def scheduled_events_for_school(
    *, school: School, status: str | None = None
) -> QuerySet[ScheduledEvent]:
    """A school's scheduled events, the next due first, optionally of one status."""
    events = ScheduledEvent.objects.filter(school=school).order_by("due_at", "created_at", "id")
    return events if status is None else events.filter(status=status)


def scheduled_events_visible(*, school_id: int | None) -> QuerySet[ScheduledEvent]:
    """Scheduled events of a school, or of every school for None; the next due first."""
    queryset = ScheduledEvent.objects.select_related("school").order_by(
        "due_at", "created_at", "id"
    )
    if school_id is not None:
        queryset = queryset.filter(school_id=school_id)
    return queryset
