"""Publishing events: validate, store in the caller's transaction, hand off after commit.

The Event table is an outbox. ``event_publish`` stores the row and, after the caller's commit,
calls the one hook the app that delivers events registered with ``event_published_hook_set``
(the deliveries app, from its ``AppConfig.ready``). The events app never names that app: it
only knows that someone may want to hear about new rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from common.clock import db_now
from schools.models import School
from webhook_engine.inputs import (
    datetime_problem,
    json_problems,
    place_path,
    text_problem,
    text_storable,
)

from ..models import Event, EventType
from ..schemas import data_errors
from ..selectors import event_type_for_publish

logger = logging.getLogger(__name__)

_published_hook: Callable[[], object] | None = None
_promise_sql: Callable[[], str] | None = None
# A commit counts as done within a promise only with this to spare: the time is counted on this
# host's monotonic clock, which NTP may slew by up to 8 % against another host's (chrony's
# fastest), and the promise is given in whole milliseconds.
_PROMISE_RATE = 1.1
_PROMISE_MARGIN_SECONDS = 0.001


class _Promise(threading.local):
    # time.monotonic() before which a commit needs no call of the hook (0: none known).
    until = 0.0


_promise = _Promise()


def event_published_hook_set(
    hook: Callable[[], object] | None, *, promise_sql: Callable[[], str] | None = None
) -> None:
    """Register the callable run after the commit of every transaction that published events.

    Called once at start-up by the app that delivers events (``deliveries``: its fan-out
    request). It takes no arguments (the events are read from the outbox) and must not raise
    (a failure is logged and the events wait for the next call or the sweeper). ``None``
    removes it: events are then stored and nothing is told.

    ``promise_sql`` (PostgreSQL): gives an SQL expression read in each event's insert
    statement, the number of milliseconds after that read within which a commit needs no call
    of the hook (NULL, zero or less: every commit does), as when whoever the hook would tell
    has promised to look at the outbox again once that long has passed since it last let
    anyone read the promise. A commit done within it, timed on this host from before the
    statement was sent (so never short of the real time, give or take the clocks' rates),
    saves the hook's own statements after the commit.
    """
    global _published_hook, _promise_sql
    _published_hook = hook
    _promise_sql = promise_sql
    _promise.until = 0.0


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
    """Store an event in the caller's transaction and hand it to fan-out after commit; see
    ``event_publish_or_get``, which also says whether this call stored it."""
    event, _created = event_publish_or_get(
        school=school,
        type=type,
        data=data,
        occurred_at=occurred_at,
        idempotency_key=idempotency_key,
    )
    return event


def event_publish_or_get(
    *,
    school: School,
    type: str,
    data: Any,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    school_slug: str | None = None,
) -> tuple[Event, bool]:
    """Store an event in the caller's transaction and hand it to fan-out after commit.

    ``data`` is a JSON object; aware datetimes, dates, UUIDs and Decimals in it are stored as
    ISO-8601 strings (datetimes in UTC; deliveries render them in the school's time zone).

    Idempotent per ``(school, idempotency_key)``: publishing again with the same key returns the
    first event and fans nothing out a second time. If the transaction rolls back, nothing is sent.

    ``data`` must validate against the type's JSON Schema. A deprecated type is accepted and a
    warning is logged. Every date must be one each school's zone can show (a UTC offset within
    ±14:00, not within a day of year 1 or year 9999): ``occurred_at``, and the ISO-8601
    datetimes with an offset inside ``data``, which deliveries move into the school's zone.

    Raises ``ValidationError`` with a field map (``type``, ``data``, ``occurred_at``,
    ``idempotency_key``) for an unknown event type, data that is not JSON or does not match the
    type's schema (each message names the failing path, e.g. ``data.course.id: 'id' is a
    required property``), text that cannot be stored (NUL, lone surrogates), nesting deeper
    than ``webhook_engine.inputs.MAX_JSON_DEPTH``, a date no zone can show, and
    ``EventIdempotencyConflict`` when the key was used for a different event.

    Returns the event and whether this call stored it: False for the key's first event, also
    when another caller stored it while this one was publishing (a retry in flight at once).

    ``school_slug``: the slug the caller was given, ``school`` being its per-process copy of
    the school with that slug (the API's), which another process may have outdated by giving
    the slug to another school: the event is then stored for, and the key's first event looked
    up in, the school that has the slug when the event is stored, without a query more.
    Raises ``School.DoesNotExist`` when no school has it any more.
    """
    event_type = event_type_get(type)
    if event_type.deprecated:
        logger.warning("Event type %s is deprecated; published for school %s", type, school.slug)

    normalized = event_data_validate(event_type, data)
    occurred_at = _occurred_at_validate(occurred_at)
    key = idempotency_key_validate(idempotency_key)

    if key is not None:
        existing = Event.objects.filter(_owner(school, school_slug), idempotency_key=key).first()
        if existing is not None:
            return _event_same_or_conflict(existing, type=type, data=normalized), False

    fields = {
        "school": school,
        "type_id": type,
        "data": normalized,
        "occurred_at": occurred_at,
        "idempotency_key": key,
        # The database's clock: events published on several hosts keep their order (a
        # catch-up after a pause sends them in it), whatever the hosts' clocks say.
        "created_at": db_now(),
    }
    if key is None:
        # A new UUID cannot collide: one INSERT, no savepoint or transaction of its own.
        event = _event_insert(Event(**fields), school_slug=school_slug)
        _fan_out_after_commit(event)
        return event, True
    try:
        with transaction.atomic():
            event = _event_insert(Event(**fields), school_slug=school_slug)
    except IntegrityError:
        # Another publisher committed the same key between our lookup and our insert.
        existing = Event.objects.filter(_owner(school, school_slug), idempotency_key=key).first()
        if existing is None:
            raise
        return _event_same_or_conflict(existing, type=type, data=normalized), False

    _fan_out_after_commit(event)
    return event, True


def _owner(school: School, school_slug: str | None) -> Q:
    """The events of the publishing school (by its slug, when given one)."""
    return Q(school=school) if school_slug is None else Q(school__slug=school_slug)


_INSERT_FIELDS = tuple(
    field for field in Event._meta.concrete_fields if not getattr(field, "db_returning", False)
)
# Made of the model's own table and column names, once.
_INSERT = "INSERT INTO {table} ({columns}) VALUES ({values})".format(  # noqa: S608
    table=Event._meta.db_table,
    columns=", ".join(str(field.column) for field in _INSERT_FIELDS),
    values=", ".join(["%s"] * len(_INSERT_FIELDS)),
)


def _returning_promise(statement: str, *, returning: bool) -> str:
    """``statement`` also returning the registered promise (``event_published_hook_set``),
    as its last column, where the database has one to read."""
    if _promise_sql is None or connection.vendor != "postgresql":
        return statement
    return f"{statement}{', ' if returning else ' RETURNING '}({_promise_sql()})"


# The same with the school named by its slug: its id read by the unique slug's index in the
# statement itself, none inserted when no school has the slug (``_insert_by_slug``).
_SCHOOL_PARAM = [field.name for field in _INSERT_FIELDS].index("school")


@functools.cache
def _insert_by_slug(vendor: str) -> str:
    # PostgreSQL types the values by their casts (a SELECT list does not take its columns'
    # types as VALUES does); SQLite has none to give.
    def value(index: int, field: Any) -> str:
        if index == _SCHOOL_PARAM:
            return "s.id"
        return f"%s::{field.db_type(connection)}" if vendor == "postgresql" else "%s"

    return (  # noqa: S608 - table and column names only
        "INSERT INTO {table} ({columns}) SELECT {values} FROM {schools} AS s "
        "WHERE s.slug = %s RETURNING school_id"
    ).format(
        table=Event._meta.db_table,
        columns=", ".join(str(field.column) for field in _INSERT_FIELDS),
        values=", ".join(value(index, field) for index, field in enumerate(_INSERT_FIELDS)),
        schools=School._meta.db_table,
    )


def _event_insert(event: Event, *, school_slug: str | None = None) -> Event:
    """Insert ``event`` (its id and defaults already set) with one fixed statement.

    What ``Model.save`` would send, each value prepared by its field as the ORM prepares it,
    without compiling the statement anew for every event (``Event.objects.create`` cost about
    85 µs more of the roughly 400 µs of CPU a publish takes). Raises ``IntegrityError`` as
    ``save`` does.

    ``school_slug``: for the school that has this slug now, whatever ``event.school`` is (in
    the same statement); ``School.DoesNotExist`` when none has it.
    """
    params = [
        field.get_db_prep_save(field.pre_save(event, True), connection) for field in _INSERT_FIELDS
    ]
    if school_slug is not None:
        params = [*params[:_SCHOOL_PARAM], *params[_SCHOOL_PARAM + 1 :], school_slug]
    base = _INSERT if school_slug is None else _insert_by_slug(connection.vendor)
    statement = _returning_promise(base, returning=school_slug is not None)
    sent_at = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone() if statement is not _INSERT else None
    if school_slug is not None:
        if row is None:
            raise School.DoesNotExist(f"No school has the slug {school_slug!r} any more.")
        event.school_id = row[0]  # another school's copy drops with it
    if statement is not base:
        _promise_note(sent_at, row[-1] if row is not None else None)
    event._state.adding = False
    event._state.db = connection.alias
    return event


def _promise_note(sent_at: float, milliseconds: Any) -> None:
    """Keep the promise an insert read: its milliseconds counted from before the statement was
    sent (the database read them later), with the clocks' margin."""
    if milliseconds is None or milliseconds <= 0:
        _promise.until = 0.0
    else:
        within = float(milliseconds) / 1000 / _PROMISE_RATE - _PROMISE_MARGIN_SECONDS
        _promise.until = sent_at + within


def _published_hook_call() -> None:
    """After a commit: call the hook unless the commit was done within a promise."""
    if _published_hook is None or time.monotonic() < _promise.until:
        return
    _published_hook()


def _fan_out_after_commit(event: Event) -> None:
    if _published_hook is not None:
        transaction.on_commit(_published_hook_call, robust=True)


def event_type_get(key: str) -> EventType:
    if not isinstance(key, str):
        raise ValidationError({"type": [_("The event type is not text.")]})
    if not text_storable(key):
        raise ValidationError({"type": [text_problem(key, subject=_("The event type"))]})
    event_type = event_type_for_publish(key)
    if event_type is None:
        raise ValidationError(
            {
                "type": [
                    _("Unknown event type %(type)s: it is not in the event catalog.")
                    % {"type": repr(key)}
                ]
            }
        )
    return event_type


def event_data_validate(event_type: EventType, data: Any) -> dict[str, Any]:
    """``data`` as plain JSON, checked against the type's schema; raises ``ValidationError``."""
    normalized = _event_data_normalize(data)
    errors = data_errors(event_type.json_schema, normalized, validator=event_type.data_validator)
    if errors:
        raise ValidationError({"data": errors})
    return normalized


def json_same(stored: Any, given: Any) -> bool:
    """Whether JSON data read back from the database is the data given (normalized).

    PostgreSQL keeps numbers as exact decimals: a float such as 1e23 comes back as the integer
    100000000000000000000000, which Python finds unequal to the float. Compared as decimals
    (as the database did), the same body is the same data.
    """
    if stored == given:
        return True
    return _as_decimals(stored) == _as_decimals(given)


def _as_decimals(value: Any) -> Any:
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


def _event_same_or_conflict(existing: Event, *, type: str, data: Any) -> Event:
    if existing.type_id == type and json_same(existing.data, data):
        return existing
    raise EventIdempotencyConflict(
        {
            "idempotency_key": [
                _(
                    "This idempotency key was already used for event %(event)s with a different "
                    "type or data."
                )
                % {"event": existing.id}
            ]
        }
    )


def _occurred_at_validate(occurred_at: dt.datetime | None) -> dt.datetime:
    if occurred_at is None:
        return db_now()
    if not isinstance(occurred_at, dt.datetime):
        raise ValidationError({"occurred_at": [_("Give a datetime.")]})
    if timezone.is_naive(occurred_at):
        raise ValidationError(
            {"occurred_at": [_("The datetime has no time zone; give an aware datetime.")]}
        )
    problem = datetime_problem(occurred_at, subject=_("The datetime"))
    if problem:
        raise ValidationError({"occurred_at": [problem]})
    return occurred_at


def idempotency_key_validate(idempotency_key: str | None) -> str | None:
    """The key as stored (stripped; None for none); raises ``ValidationError`` naming
    ``idempotency_key`` for one too long or with text that cannot be stored."""
    if idempotency_key is None:
        return None
    key = str(idempotency_key).strip()
    if not key:
        return None
    if len(key) > 255:
        raise ValidationError({"idempotency_key": [_("Use at most 255 characters.")]})
    if not text_storable(key):
        raise ValidationError({"idempotency_key": [text_problem(key, subject=_("The key"))]})
    return key


def _event_data_normalize(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(
            {"data": [_("Give a JSON object, not %(type)s.") % {"type": type(data).__name__}]}
        )
    # Depth and text first (an explicit stack: any depth is safe), then the conversion, then
    # the dates as deliveries will read them.
    _json_problems_raise(json_problems(data, path="data"))
    normalized = _json_value(data, "data")
    _json_problems_raise(json_problems(normalized, path="data", datetimes=True))
    size = len(json.dumps(normalized, separators=(",", ":")).encode())
    limit = settings.WEBHOOKS_EVENT_DATA_MAX_BYTES
    if size > limit:
        raise ValidationError(
            {
                "data": [
                    _("The data is %(size)s bytes of JSON; the limit is %(limit)s bytes.")
                    % {"size": size, "limit": limit}
                ]
            }
        )
    return normalized


def _json_problems_raise(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise ValidationError({"data": [message for _path, message in problems]})


def _json_value(value: Any, place: Any) -> Any:
    """Return ``value`` as plain JSON, or raise a ValidationError naming the offending path.

    ``place``: the value's path, or (its parent's place, its key or index), written out only
    for an error (``_path_of``)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError({"data": [_not_representable(_path_of(place), value)]})
        return value
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    {
                        "data": [
                            _("%(path)s has the key %(key)s; JSON object keys must be strings.")
                            % {"path": _path_of(place), "key": repr(key)}
                        ]
                    }
                )
            result[key] = _json_value(item, (place, key))
        return result
    if isinstance(value, list | tuple):
        return [_json_value(item, (place, index)) for index, item in enumerate(value)]
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise ValidationError(
                {
                    "data": [
                        _("%(path)s is a datetime without a time zone; give an aware datetime.")
                        % {"path": _path_of(place)}
                    ]
                }
            )
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError({"data": [_not_representable(_path_of(place), value)]})
        return str(value)
    raise ValidationError(
        {
            "data": [
                _("%(path)s is a %(type)s, which is not JSON-serializable.")
                % {"path": _path_of(place), "type": type(value).__name__}
            ]
        }
    )


def _path_of(place: Any) -> str:
    """A place of ``_json_value`` as a path: ``data.course.id``, ``data.items[2]``."""
    return place_path(place, key_step=_key_step)


def _key_step(path: str, key: str) -> str:
    return f"{path}.{key}"


def _not_representable(path: str, value: object) -> str:
    return _("%(subject)s is %(value)s, which JSON cannot represent.") % {
        "subject": path,
        "value": value,
    }
