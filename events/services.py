"""Writes of the events app: publishing events and keeping the catalog in the database."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from schools.models import School

from .catalog import EVENT_TYPES
from .models import Event, EventType
from .schemas import data_errors

logger = logging.getLogger(__name__)

FAN_OUT_TASK = "deliveries.event_fan_out"


class EventIdempotencyConflict(ValidationError):
    """The idempotency key was already used for an event with another type or other data."""


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

    try:
        with transaction.atomic():
            event = Event.objects.create(
                school=school,
                type_id=type,
                data=normalized,
                occurred_at=occurred_at,
                idempotency_key=key,
            )
    except IntegrityError:
        # Another publisher committed the same key between our lookup and our insert.
        existing = Event.objects.filter(school=school, idempotency_key=key).first()
        if existing is None:
            raise
        return _event_same_or_conflict(existing, type=type, data=normalized)

    event_id = str(event.id)
    transaction.on_commit(lambda: _fan_out_enqueue(event_id), robust=True)
    return event


def _event_type_get(key: str) -> EventType:
    event_type = EventType.objects.filter(key=key).only("key", "deprecated", "json_schema").first()
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


def _fan_out_enqueue(event_id: str) -> None:
    try:
        current_app.send_task(FAN_OUT_TASK, args=[event_id])
    except Exception:
        # The event is committed; the sweeper fans out events whose message never arrived.
        logger.exception("Could not enqueue fan-out of event %s; the sweeper will re-drive it")


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
    existing = {row.key: row for row in manager.all()}
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
    return len(to_create) + len(to_update)
