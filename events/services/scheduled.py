"""Events that fire on time: scheduled events (a course's start) and the daily ``cron.midnight``."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from common.clock import db_now
from schools.models import School
from webhook_engine.inputs import datetime_problem, text_problem

from ..models import Event, ScheduledEvent, ScheduledEventStatus
from ..schedule import DailyRun, daily_run_latest
from .publish import (
    EventIdempotencyConflict,
    event_data_validate,
    event_publish,
    event_type_get,
    json_same,
)

logger = logging.getLogger(__name__)


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
    """Schedule an event of ``type`` to be published for ``school`` at ``due_at``; see
    ``scheduled_event_create_or_get``, which also says whether this call scheduled it."""
    scheduled, _created = scheduled_event_create_or_get(
        school=school, type=type, data=data, due_at=due_at, key=key
    )
    return scheduled


def scheduled_event_create_or_get(
    *,
    school: School,
    type: str,
    data: Any,
    due_at: dt.datetime,
    key: str | None = None,
) -> tuple[ScheduledEvent, bool]:
    """Schedule an event of ``type`` to be published for ``school`` at ``due_at``.

    The data is validated now, as ``event_publish`` would (JSON, the type's schema), so a
    mistake shows when scheduling rather than when it is due. A ``due_at`` in the past is
    published at the next scheduler tick. The event's ``occurred_at`` will be ``due_at``.

    Idempotent per ``(school, key)``: scheduling again with the same key, type, data and time
    returns the existing one (whatever its status). Without a key, every call schedules anew.

    Raises ``ValidationError`` with a field map (``type``, ``data``, ``due_at``, ``key``), and
    ``ScheduledEventConflict`` when the key is used by one with another type, data or time
    (move or cancel it instead).

    Returns the scheduled event and whether this call scheduled it: False for the key's
    existing one, also when another caller scheduled it while this one was at it.
    """
    event_type = event_type_get(type)
    if event_type.deprecated:
        logger.warning("Event type %s is deprecated; scheduled for school %s", type, school.slug)
    normalized = event_data_validate(event_type, data)
    due_at = _due_at_validate(due_at)
    key = _scheduled_key_validate(key)

    if key is not None:
        existing = ScheduledEvent.objects.filter(school=school, key=key).first()
        if existing is not None:
            same = _scheduled_same_or_conflict(existing, type=type, data=normalized, due_at=due_at)
            return same, False
    try:
        with transaction.atomic():
            created = ScheduledEvent.objects.create(
                school=school, type_id=type, data=normalized, due_at=due_at, key=key
            )
        return created, True
    except IntegrityError:
        # Another caller scheduled the same key between our lookup and our insert.
        existing = ScheduledEvent.objects.filter(school=school, key=key).first()
        if existing is None:
            raise
        same = _scheduled_same_or_conflict(existing, type=type, data=normalized, due_at=due_at)
        return same, False


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
        new_data = row.data if data is None else event_data_validate(row.type, data)
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
        now = db_now()
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
        current = now or db_now()
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
    if existing.type_id == type and json_same(existing.data, data) and existing.due_at == due_at:
        return existing
    raise ScheduledEventConflict(
        {
            "key": [
                _(
                    "The key %(key)s is already used by a %(status)s %(type)s event due at "
                    "%(due)s, with a different type, data or time: move or cancel that one "
                    "instead."
                )
                % {
                    "key": repr(existing.key),
                    # The reader's word for it; lowercase, as it stands mid-sentence.
                    "status": existing.get_status_display().lower(),
                    "type": existing.type_id,
                    "due": existing.due_at.isoformat(),
                }
            ]
        }
    )


def _scheduled_require_pending(row: ScheduledEvent, action: str) -> None:
    """Raise ``ScheduledEventNotPending`` unless the row is still scheduled; ``action`` is
    ``"moved"`` or ``"cancelled"`` (each refusal is its own sentence, for translation)."""
    if row.status == ScheduledEventStatus.SCHEDULED:
        return
    moved = action == "moved"
    if row.status == ScheduledEventStatus.PUBLISHED:
        assert row.published_at is not None  # noqa: S101 - a database check constraint
        message = (
            _("This event cannot be moved: it was already published at %(when)s.")
            if moved
            else _("This event cannot be cancelled: it was already published at %(when)s.")
        ) % {"when": row.published_at.isoformat()}
    elif row.status == ScheduledEventStatus.CANCELLED:
        message = (
            _("This event cannot be moved: it was cancelled.")
            if moved
            else _("This event cannot be cancelled: it was cancelled.")
        )
    else:
        message = (
            _("This event cannot be moved: it could not be published (%(error)s).")
            if moved
            else _("This event cannot be cancelled: it could not be published (%(error)s).")
        ) % {"error": row.error}
    raise ScheduledEventNotPending({"status": [message]})


def _due_at_validate(due_at: dt.datetime) -> dt.datetime:
    if not isinstance(due_at, dt.datetime):
        raise ValidationError({"due_at": [_("Give a datetime.")]})
    if timezone.is_naive(due_at):
        raise ValidationError(
            {"due_at": [_("The datetime has no time zone; give an aware datetime.")]}
        )
    problem = datetime_problem(due_at, subject=_("The datetime"))
    if problem:
        raise ValidationError({"due_at": [problem]})
    return due_at


def _scheduled_key_validate(key: str | None) -> str | None:
    if key is None:
        return None
    key = str(key).strip()
    if not key:
        return None
    if len(key) > 255:
        raise ValidationError({"key": [_("Use at most 255 characters.")]})
    problem = text_problem(key, subject=_("The key"))
    if problem:
        raise ValidationError({"key": [problem]})
    return key


# --- The daily event ------------------------------------------------------------------------

DAILY_EVENT_TYPE = "cron.midnight"
DAILY_IDEMPOTENCY_PREFIX = "cron.midnight:"


RESERVED_IDEMPOTENCY_PREFIXES = (DAILY_IDEMPOTENCY_PREFIX, SCHEDULED_IDEMPOTENCY_PREFIX)


def idempotency_key_reserved_check(*, key: str | None) -> None:
    """Refuse an API client's key that begins as the product's own keys do.

    The daily event and published scheduled events take their idempotency keys, per school,
    from the keys every event shares: a client's event under ``cron.midnight:<date>`` would
    take that day's daily event's place (it would never be sent), one under
    ``scheduled-event:<id>`` would make that scheduled event fail. Keys are compared as they
    are stored (stripped). Raises ``ValidationError`` naming ``idempotency_key``.
    """
    if key is None or not str(key).strip().startswith(RESERVED_IDEMPOTENCY_PREFIXES):
        return
    raise ValidationError(
        {
            "idempotency_key": [
                _(
                    "Keys beginning with %(daily)s or %(scheduled)s are the product's own "
                    "(daily and scheduled events); use another key."
                )
                % {"daily": DAILY_IDEMPOTENCY_PREFIX, "scheduled": SCHEDULED_IDEMPOTENCY_PREFIX}
            ]
        }
    )


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
    now = now or db_now()
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
    keys = {f"{DAILY_IDEMPOTENCY_PREFIX}{run.day.isoformat()}" for _school, run in runs}
    done = set(
        Event.objects.filter(
            school_id__in=[school.id for school, _run in runs], idempotency_key__in=keys
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
