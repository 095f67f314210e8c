"""Writes of the events app, by stage: publishing (``publish``), the catalog (``catalog``),
events that fire on time (``scheduled``)."""

from .catalog import event_types_sync
from .publish import (
    EventIdempotencyConflict,
    event_publish,
    event_publish_or_get,
    event_published_hook_set,
    idempotency_key_validate,
)
from .scheduled import (
    DAILY_EVENT_TYPE,
    DAILY_IDEMPOTENCY_PREFIX,
    SCHEDULED_IDEMPOTENCY_PREFIX,
    ScheduledEventConflict,
    ScheduledEventNotPending,
    daily_event_schedule,
    daily_events_publish_due,
    idempotency_key_reserved_check,
    scheduled_event_cancel,
    scheduled_event_create,
    scheduled_event_create_or_get,
    scheduled_event_move,
    scheduled_events_publish_due,
)

__all__ = [
    "DAILY_EVENT_TYPE",
    "DAILY_IDEMPOTENCY_PREFIX",
    "SCHEDULED_IDEMPOTENCY_PREFIX",
    "EventIdempotencyConflict",
    "ScheduledEventConflict",
    "ScheduledEventNotPending",
    "daily_event_schedule",
    "daily_events_publish_due",
    "event_publish",
    "event_publish_or_get",
    "event_published_hook_set",
    "event_types_sync",
    "idempotency_key_reserved_check",
    "idempotency_key_validate",
    "scheduled_event_cancel",
    "scheduled_event_create",
    "scheduled_event_create_or_get",
    "scheduled_event_move",
    "scheduled_events_publish_due",
]
