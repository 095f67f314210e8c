"""Writes of the events app: publishing events, the catalog, scheduled and daily events."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from celery import current_app
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from schools.models import School

from .catalog import EVENT_TYPES
from .models import Event, EventType, FanOutRequest, ScheduledEvent, ScheduledEventStatus
from .schedule import DailyRun, daily_run_latest
from .schemas import data_errors
from .selectors import event_type_for_publish

logger = logging.getLogger(__name__)

FAN_OUT_TASK = "deliveries.events_fan_out"
# A fan-out request pending longer than this is sent again: its message may have been lost.
FAN_OUT_REQUEST_RESEND_SECONDS = 2.0


class EventIdempotencyConflict(ValidationError):
    """The idempotency key was already used for an event with another type or other data."""

    http_status = 409


def event_publish(
    *,
    school: School,
    type: str,
    data: Any,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> Event:
    """Store an event in the caller's transaction and hand it to fan-out after commit.

    ``data`` is a JSON object; aware datetimes, dates, UUIDs and Decimals in it are stored as
    ISO-8601 strings (datetimes in UTC; deliveries render them in the school's time zone).

    Idempotent per ``(school, idempotency_key)``: publishing again with the same key returns the
    first event and fans nothing out a second time. If the transaction rolls back, nothing is sent.

    ``data`` must validate against the type's JSON Schema. A deprecated type is accepted and a
    warning is logged.

    Raises ``ValidationError`` with a field map (``type``, ``data``, ``occurred_at``,
    ``idempotency_key``) for an unknown event type, data that is not JSON or does not match the
    type's schema (each message names the failing path, e.g. ``data.course.id: 'id' is a
    required property``), and ``EventIdempotencyConflict`` when the key was used for a
    different event.
    """
    event_type = _event_type_get(type)
    if event_type.deprecated:
        logger.warning("Event type %s is deprecated; published for school %s", type, school.slug)

    normalized = _event_data_validate(event_type, data)
    occurred_at = _occurred_at_validate(occurred_at)
    key = _idempotency_key_validate(idempotency_key)

    if key is not None:
        existing = Event.objects.filter(school=school, idempotency_key=key).first()
        if existing is not None:
            return _event_same_or_conflict(existing, type=type, data=normalized)

    fields = {
        "school": school,
        "type_id": type,
        "data": normalized,
        "occurred_at": occurred_at,
        "idempotency_key": key,
    }
    if key is None:
        # A new UUID cannot collide: one INSERT, no savepoint or transaction of its own.
        event = Event.objects.create(**fields)
        _fan_out_after_commit(event)
        return event
    try:
        with transaction.atomic():
            event = Event.objects.create(**fields)
    except IntegrityError:
        # Another publisher committed the same key between our lookup and our insert.
        existing = Event.objects.filter(school=school, idempotency_key=key).first()
        if existing is None:
            raise
        return _event_same_or_conflict(existing, type=type, data=normalized)

    _fan_out_after_commit(event)
    return event


def _fan_out_after_commit(event: Event) -> None:
    transaction.on_commit(fan_out_request, robust=True)


def _event_type_get(key: str) -> EventType:
    event_type = event_type_for_publish(key)
    if event_type is None:
        raise ValidationError(
            {"type": [f"Unknown event type {key!r}: it is not in the event catalog."]}
        )
    return event_type


def _event_data_validate(event_type: EventType, data: Any) -> dict[str, Any]:
    """``data`` as plain JSON, checked against the type's schema; raises ``ValidationError``."""
    normalized = _event_data_normalize(data)
    errors = data_errors(event_type.json_schema, normalized)
    if errors:
        raise ValidationError({"data": errors})
    return normalized


def fan_out_request(*, force: bool = False) -> bool:
    """Ask a worker to fan out the events awaiting it; call after the events are committed.

    Coalesced: while a request is pending (asked for less than
    ``FAN_OUT_REQUEST_RESEND_SECONDS`` ago and not yet taken up), no second task message is
    sent, so at a high rate one task fans out many events. ``force`` sends one regardless.
    Returns whether a message was sent. A failure is logged, not raised: the events are
    committed, and the next request or the sweeper fans them out.
    """
    now_ms = int(time.time() * 1000)
    resend_ms = int(FAN_OUT_REQUEST_RESEND_SECONDS * 1000)
    if not _fan_out_request_claim(now_ms, stale_before=now_ms + 1 if force else now_ms - resend_ms):
        return False
    try:
        current_app.send_task(FAN_OUT_TASK)
    except Exception:
        logger.exception("Could not enqueue fan-out; the next request or the sweeper will")
        # Not pending after all: the next publish tries again instead of waiting it out.
        FanOutRequest.objects.filter(pk=1, requested_at_ms=now_ms).update(requested_at_ms=None)
        return False
    return True


def _fan_out_request_claim(now_ms: int, *, stale_before: int) -> bool:
    """Mark fan-out requested at ``now_ms`` unless a request made at or after ``stale_before``
    is pending; True if this call marked it.

    Runs once per published event, in raw SQL. Under load a fresh request is usually pending,
    which a plain read shows without taking the row's lock; otherwise an upsert (the row is
    gone after a table flush) marks it. Reading first is safe: a pending request seen after
    this event's commit is cleared by its task after that commit, before the task reads.
    """
    if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        return True  # no RETURNING: a message per event, as the embedded setup can afford
    with connection.cursor() as cursor:
        cursor.execute("SELECT requested_at_ms FROM events_fanoutrequest WHERE id = 1")
        row = cursor.fetchone()
        if row is not None and row[0] is not None and row[0] >= stale_before:
            return False
        cursor.execute(
            "INSERT INTO events_fanoutrequest (id, requested_at_ms) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET requested_at_ms = excluded.requested_at_ms "
            "WHERE events_fanoutrequest.requested_at_ms IS NULL "
            "OR events_fanoutrequest.requested_at_ms < %s "
            "RETURNING id",
            [now_ms, stale_before],
        )
        return cursor.fetchone() is not None


def fan_out_request_take() -> None:
    """Clear the pending request; a fan-out task does this before it reads the events."""
    FanOutRequest.objects.filter(pk=1).update(requested_at_ms=None)


def _event_same_or_conflict(existing: Event, *, type: str, data: Any) -> Event:
    if existing.type_id == type and existing.data == data:
        return existing
    raise EventIdempotencyConflict(
        {
            "idempotency_key": [
                f"This idempotency key was already used for event {existing.id} "
                "with a different type or data."
            ]
        }
    )


def _occurred_at_validate(occurred_at: dt.datetime | None) -> dt.datetime:
    if occurred_at is None:
        return timezone.now()
    if not isinstance(occurred_at, dt.datetime):
        raise ValidationError({"occurred_at": ["Give a datetime."]})
    if timezone.is_naive(occurred_at):
        raise ValidationError(
            {"occurred_at": ["The datetime has no time zone; give an aware datetime."]}
        )
    return occurred_at


def _idempotency_key_validate(idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    key = str(idempotency_key).strip()
    if not key:
        return None
    if len(key) > 255:
        raise ValidationError({"idempotency_key": ["Use at most 255 characters."]})
    return key


def _event_data_normalize(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError({"data": [f"Give a JSON object, not {type(data).__name__}."]})
    normalized = _json_value(data, "data")
    size = len(json.dumps(normalized, separators=(",", ":")).encode())
    limit = settings.WEBHOOKS_EVENT_DATA_MAX_BYTES
    if size > limit:
        raise ValidationError(
            {"data": [f"The data is {size} bytes of JSON; the limit is {limit} bytes."]}
        )
    return normalized


def _json_value(value: Any, path: str) -> Any:
    """Return ``value`` as plain JSON, or raise a ValidationError naming the offending path."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError({"data": [f"{path} is {value}, which JSON cannot represent."]})
        return value
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    {"data": [f"{path} has the key {key!r}; JSON object keys must be strings."]}
                )
            result[key] = _json_value(item, f"{path}.{key}")
        return result
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise ValidationError(
                {"data": [f"{path} is a datetime without a time zone; give an aware datetime."]}
            )
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError({"data": [f"{path} is {value}, which JSON cannot represent."]})
        return str(value)
    raise ValidationError(
        {"data": [f"{path} is a {type(value).__name__}, which is not JSON-serializable."]}
    )


def event_types_sync(
    *, entries: Iterable[dict[str, Any]] = EVENT_TYPES, model: type[models.Model] = EventType
) -> int:
    """Make the EventType table hold the shipped catalog; return how many types were written.

    Creates the catalog's types and updates those that changed (they are marked ``shipped``).
    A shipped type that is no longer in the catalog is marked deprecated, never deleted: events
    and subscriptions that use it keep working. Types added by operators in the admin are left
    alone, unless the catalog now ships the same key, which then takes it over. Events,
    subscriptions and other school data are not touched.

    Idempotent, and a no-op when nothing changed. ``model`` lets a data migration pass its
    historical model: only the fields that model has are written.
    """
    manager = model._default_manager  # type: ignore[attr-defined]
    fields = {field.name for field in model._meta.get_fields()} - {"key"}
    has_shipped = "shipped" in fields
    existing = {row.pk: row for row in manager.all()}
    to_create, to_update, changed_fields = [], [], set()
    keys = set()
    for entry in entries:
        keys.add(entry["key"])
        values = {name: value for name, value in entry.items() if name in fields}
        if has_shipped:
            values["shipped"] = True
        row = existing.get(entry["key"])
        if row is None:
            to_create.append(model(key=entry["key"], **values))
            continue
        differing = {name for name, value in values.items() if getattr(row, name) != value}
        if differing:
            for name in differing:
                setattr(row, name, values[name])
            to_update.append(row)
            changed_fields |= differing
    manager.bulk_create(to_create)
    if to_update:
        manager.bulk_update(to_update, sorted(changed_fields))
    if has_shipped:
        retired = manager.filter(shipped=True, deprecated=False).exclude(key__in=keys)
        retired.update(deprecated=True)
    # Bulk writes send no signals: drop this process's copies of the types in one go.
    caches["lookups"].clear()
    return len(to_create) + len(to_update)


# --- Scheduled events -----------------------------------------------------------------------


class ScheduledEventConflict(ValidationError):
    """The key is already used by a scheduled event with another type, data or time."""

    http_status = 409


class ScheduledEventNotPending(ValidationError):
    """The scheduled event was already published, cancelled or failed: it cannot change."""

    http_status = 409


SCHEDULED_IDEMPOTENCY_PREFIX = "scheduled-event:"


def scheduled_event_create(
    *,
    school: School,
    type: str,
    data: Any,
    due_at: dt.datetime,
    key: str | None = None,
) -> ScheduledEvent:
    """Schedule an event of ``type`` to be published for ``school`` at ``due_at``.

    The data is validated now, as ``event_publish`` would (JSON, the type's schema), so a
    mistake shows when scheduling rather than when it is due. A ``due_at`` in the past is
    published at the next scheduler tick. The event's ``occurred_at`` will be ``due_at``.

    Idempotent per ``(school, key)``: scheduling again with the same key, type, data and time
    returns the existing one (whatever its status). Without a key, every call schedules anew.

    Raises ``ValidationError`` with a field map (``type``, ``data``, ``due_at``, ``key``), and
    ``ScheduledEventConflict`` when the key is used by one with another type, data or time
    (move or cancel it instead).
    """
    event_type = _event_type_get(type)
    if event_type.deprecated:
        logger.warning("Event type %s is deprecated; scheduled for school %s", type, school.slug)
    normalized = _event_data_validate(event_type, data)
    due_at = _due_at_validate(due_at)
    key = _scheduled_key_validate(key)

    if key is not None:
        existing = ScheduledEvent.objects.filter(school=school, key=key).first()
        if existing is not None:
            return _scheduled_same_or_conflict(existing, type=type, data=normalized, due_at=due_at)
    try:
        with transaction.atomic():
            return ScheduledEvent.objects.create(
                school=school, type_id=type, data=normalized, due_at=due_at, key=key
            )
    except IntegrityError:
        # Another caller scheduled the same key between our lookup and our insert.
        existing = ScheduledEvent.objects.filter(school=school, key=key).first()
        if existing is None:
            raise
        return _scheduled_same_or_conflict(existing, type=type, data=normalized, due_at=due_at)


def scheduled_event_move(
    *, scheduled_event: ScheduledEvent, due_at: dt.datetime, data: Any = None
) -> ScheduledEvent:
    """Move a scheduled event to ``due_at`` (a course rescheduled), optionally with new data.

    Only an event that is still scheduled can move; the row is locked, so a move and the
    publisher never both win: either the move lands first and the event is published at the
    new time, or it was already published and the move is refused. Moving to the same time
    with the same data is a no-op.

    Raises ``ValidationError`` (``due_at``, ``data``) and ``ScheduledEventNotPending``.
    """
    due_at = _due_at_validate(due_at)
    with transaction.atomic():
        row = ScheduledEvent.objects.select_for_update().get(pk=scheduled_event.pk)
        _scheduled_require_pending(row, "moved")
        new_data = row.data if data is None else _event_data_validate(row.type, data)
        if (row.due_at, row.data) == (due_at, new_data):
            return row
        row.due_at, row.data, row.updated_at = due_at, new_data, timezone.now()
        row.save(update_fields=["due_at", "data", "updated_at"])
    return row


def scheduled_event_cancel(*, scheduled_event: ScheduledEvent) -> ScheduledEvent:
    """Cancel a scheduled event so that it is never published (a course called off).

    Idempotent: cancelling a cancelled event returns it unchanged. The row is locked, so the
    publisher cannot publish it while it is being cancelled.

    Raises ``ScheduledEventNotPending`` when it was already published (or failed).
    """
    with transaction.atomic():
        row = ScheduledEvent.objects.select_for_update().get(pk=scheduled_event.pk)
        if row.status == ScheduledEventStatus.CANCELLED:
            return row
        _scheduled_require_pending(row, "cancelled")
        now = timezone.now()
        row.status = ScheduledEventStatus.CANCELLED
        row.cancelled_at = now
        row.updated_at = now
        row.save(update_fields=["status", "cancelled_at", "updated_at"])
    return row


def scheduled_events_publish_due(
    *, now: dt.datetime | None = None, batch_size: int | None = None
) -> list[Event]:
    """Publish every scheduled event due at ``now`` (default: the current time); return them.

    Exactly once, with any number of callers at the same time: rows are claimed in batches with
    ``SELECT … FOR UPDATE SKIP LOCKED`` (concurrent callers take disjoint rows), and each is
    published by ``event_publish`` with an idempotency key derived from the row, in the same
    transaction that marks it published. An event whose data no longer validates (its type's
    schema changed since it was scheduled) is marked failed with the reason, and logged.
    """
    size = batch_size or settings.WEBHOOKS_SCHEDULED_EVENTS_BATCH_SIZE
    published: list[Event] = []
    while True:
        current = now or timezone.now()
        with transaction.atomic():
            rows = list(
                ScheduledEvent.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("school")
                .filter(status=ScheduledEventStatus.SCHEDULED, due_at__lte=current)
                .order_by("due_at")[:size]
            )
            for row in rows:
                event = _scheduled_event_publish(row, now=current)
                if event is not None:
                    published.append(event)
        if len(rows) < size:
            return published


def _scheduled_event_publish(row: ScheduledEvent, *, now: dt.datetime) -> Event | None:
    try:
        with transaction.atomic():
            event = event_publish(
                school=row.school,
                type=row.type_id,
                data=row.data,
                occurred_at=row.due_at,
                idempotency_key=f"{SCHEDULED_IDEMPOTENCY_PREFIX}{row.pk}",
            )
    except ValidationError as error:
        reason = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
        )
        logger.error("Scheduled event %s could not be published: %s", row.pk, reason)
        ScheduledEvent.objects.filter(pk=row.pk).update(
            status=ScheduledEventStatus.FAILED, error=reason, updated_at=now
        )
        return None
    ScheduledEvent.objects.filter(pk=row.pk).update(
        status=ScheduledEventStatus.PUBLISHED, published_at=now, event=event, updated_at=now
    )
    return event


def _scheduled_same_or_conflict(
    existing: ScheduledEvent, *, type: str, data: Any, due_at: dt.datetime
) -> ScheduledEvent:
    if existing.type_id == type and existing.data == data and existing.due_at == due_at:
        return existing
    raise ScheduledEventConflict(
        {
            "key": [
                f"The key {existing.key!r} is already used by a {existing.status} "
                f"{existing.type_id} event due at {existing.due_at.isoformat()}, with a "
                "different type, data or time: move or cancel that one instead."
            ]
        }
    )


def _scheduled_require_pending(row: ScheduledEvent, action: str) -> None:
    if row.status == ScheduledEventStatus.SCHEDULED:
        return
    if row.status == ScheduledEventStatus.PUBLISHED:
        assert row.published_at is not None  # noqa: S101 - a database check constraint
        reason = f"it was already published at {row.published_at.isoformat()}"
    elif row.status == ScheduledEventStatus.CANCELLED:
        reason = "it was cancelled"
    else:
        reason = f"it could not be published ({row.error})"
    raise ScheduledEventNotPending({"status": [f"This event cannot be {action}: {reason}."]})


def _due_at_validate(due_at: dt.datetime) -> dt.datetime:
    if not isinstance(due_at, dt.datetime):
        raise ValidationError({"due_at": ["Give a datetime."]})
    if timezone.is_naive(due_at):
        raise ValidationError(
            {"due_at": ["The datetime has no time zone; give an aware datetime."]}
        )
    return due_at


def _scheduled_key_validate(key: str | None) -> str | None:
    if key is None:
        return None
    key = str(key).strip()
    if not key:
        return None
    if len(key) > 255:
        raise ValidationError({"key": ["Use at most 255 characters."]})
    return key


# --- The daily event ------------------------------------------------------------------------

DAILY_EVENT_TYPE = "cron.midnight"
DAILY_IDEMPOTENCY_PREFIX = "cron.midnight:"


def daily_event_schedule(*, school: School) -> tuple[dt.time, ZoneInfo]:
    """The wall-clock time and zone of a school's daily event.

    By default ``WEBHOOKS_DAILY_EVENT_UTC_TIME`` (00:07) in UTC, as Edusign sends its cron; a
    school that chose a ``daily_event_time`` gets it in its own time zone.
    """
    if school.daily_event_time is None:
        return settings.WEBHOOKS_DAILY_EVENT_UTC_TIME, ZoneInfo("UTC")
    return school.daily_event_time, school.tzinfo


def daily_events_publish_due(*, now: dt.datetime | None = None) -> list[Event]:
    """Publish ``cron.midnight`` for every school whose latest daily run has not been sent.

    For each school, the latest run due at or before ``now`` (see ``events.schedule`` for the
    daylight-saving rules) is published unless it already was, with ``occurred_at`` = the run's
    instant. Runs are named by their day (``cron.midnight:<date>`` idempotency keys, unique per
    school in the database), so a day's event is never sent twice, whatever the number of
    callers. Only the latest run is caught up: after the scheduler was down for three days,
    one event is sent, once. Runs due before the school was created are not sent.

    Returns the events of the runs found due (a concurrent caller may have published some).
    """
    now = now or timezone.now()
    events: list[Event] = []
    schools = School.objects.only(
        "id", "slug", "timezone", "daily_event_time", "created_at"
    ).order_by("id")
    batch: list[tuple[School, DailyRun]] = []
    for school in schools.iterator(chunk_size=500):
        at, tz = daily_event_schedule(school=school)
        run = daily_run_latest(now, at, tz)
        if run.due_at >= school.created_at:
            batch.append((school, run))
        if len(batch) >= 500:
            events += _daily_runs_publish(batch)
            batch = []
    return events + _daily_runs_publish(batch)


def _daily_runs_publish(runs: list[tuple[School, DailyRun]]) -> list[Event]:
    if not runs:
        return []
    keys = {f"{DAILY_IDEMPOTENCY_PREFIX}{run.day.isoformat()}" for _, run in runs}
    done = set(
        Event.objects.filter(
            school_id__in=[school.id for school, _ in runs], idempotency_key__in=keys
        ).values_list("school_id", "idempotency_key")
    )
    events = []
    for school, run in runs:
        key = f"{DAILY_IDEMPOTENCY_PREFIX}{run.day.isoformat()}"
        if (school.id, key) in done:
            continue
        try:
            with transaction.atomic():
                event = event_publish(
                    school=school,
                    type=DAILY_EVENT_TYPE,
                    data={"date": run.day.isoformat(), "scheduled_for": run.due_at},
                    occurred_at=run.due_at,
                    idempotency_key=key,
                )
        except EventIdempotencyConflict:
            # The day was sent by the school's previous schedule (its time just changed).
            continue
        except ValidationError:
            logger.exception("The daily event of school %s could not be published", school.slug)
            continue
        events.append(event)
    return events
