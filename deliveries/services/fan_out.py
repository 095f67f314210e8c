"""Fan-out: one delivery per matching webhook, its body rendered once, and the task messages."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from events.models import Event
from events.selectors import events_awaiting_fan_out
from events.services import fan_out_request, fan_out_request_take
from subscriptions.models import Subscription
from subscriptions.selectors import subscriptions_matching
from webhook_engine.bodies import BodyTemplateError
from webhook_engine.envelope import envelope_build
from webhook_engine.errors import ErrorKind
from webhook_engine.render import CONTENT_TYPES, render_with_template

from ..models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

DELIVER_TASK = "deliveries.deliver"


def event_fan_out(*, event_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Create one delivery per matching active subscription and enqueue the pending ones.

    Idempotent: an event is fanned out once (the row is locked and marked in one transaction);
    later calls return ``[]``. Each body is rendered here, once, and never again; a custom body
    that cannot be rendered for this event fails its delivery with the reason, the others go on.
    Returns the ids of the deliveries created.
    """
    now = timezone.now()
    type_and_school = (
        Event.objects.filter(pk=event_id, fanned_out_at__isnull=True)
        .values_list("type_id", "school_id")
        .first()
    )
    if type_and_school is None:
        return []
    if not subscriptions_matching(school_id=type_and_school[1], event_type=type_and_school[0]):
        # Nothing to deliver: mark it done in one statement, no lock or transaction needed.
        Event.objects.filter(pk=event_id, fanned_out_at__isnull=True).update(fanned_out_at=now)
        return []
    with transaction.atomic():
        event = (
            Event.objects.select_for_update(of=("self",))
            .select_related("school")
            .filter(pk=event_id, fanned_out_at__isnull=True)
            .first()
        )
        if event is None:
            return []
        subscriptions = subscriptions_matching(school_id=event.school_id, event_type=event.type_id)
        deliveries = [
            delivery_build(event=event, subscription=subscription, now=now)
            for subscription in subscriptions
        ]
        Delivery.objects.bulk_create(deliveries)
        Event.objects.filter(pk=event.pk).update(fanned_out_at=now)
        pending = [d.id for d in deliveries if d.status == DeliveryStatus.PENDING]
        transaction.on_commit(lambda: deliveries_enqueue(pending), robust=True)
    return [delivery.id for delivery in deliveries]


def events_fan_out_pending(*, limit: int | None = None) -> int:
    """Fan out the events awaiting it, oldest first, up to ``limit`` in one transaction.

    The task behind a fan-out request (``events.services.fan_out_request``): it takes the
    request first, then reads, so an event committed after the read has made a request of its
    own. Rows another worker holds are skipped. A full batch (``limit`` events, or
    ``WEBHOOKS_FAN_OUT_MAX_BYTES`` of bodies) asks for another task rather than looping, so a
    backlog does not hold a worker past its time limit. An event whose deliveries cannot be
    built is left waiting, logged, and passed over, so it cannot hold up the events behind it;
    if the batch fails as a whole, each event is tried on its own. Returns how many events
    were fanned out.
    """
    limit = limit or settings.WEBHOOKS_FAN_OUT_BATCH_SIZE
    fan_out_request_take()
    passed_over: set[uuid.UUID] = set()
    fanned_out = 0
    while True:
        try:
            batch = _events_fan_out_batch(limit=limit, passed_over=passed_over)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("Batch fan-out failed; fanning out its events one by one")
            return fanned_out + _events_fan_out_one_by_one(limit=limit, passed_over=passed_over)
        fanned_out += len(batch.fanned_out)
        passed_over.update(batch.failed)
        if batch.more and not batch.fanned_out:
            continue  # a whole batch of events that failed: look past them now
        if batch.more:
            fan_out_request(force=True)
        return fanned_out


@dataclass(frozen=True)
class _Batch:
    fanned_out: list[uuid.UUID]
    failed: list[uuid.UUID]
    more: bool  # events may be waiting beyond this batch


def _events_fan_out_batch(*, limit: int, passed_over: set[uuid.UUID]) -> _Batch:
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Walk the partial index in order: the entries of events fanned out earlier are
            # marked dead as the scan passes them, and later batches skip them. A bitmap scan
            # (the planner's choice when few events wait) would read every one of them again
            # until the next vacuum.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_bitmapscan = off")
        events = list(
            Event.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("school")
            .filter(fanned_out_at__isnull=True)
            .exclude(pk__in=passed_over)
            .order_by("created_at", "id")[:limit]
        )
        more = len(events) >= limit
        # One query per school in the batch, however many events it has.
        by_school: dict[int, list[Subscription]] = {}
        deliveries: list[Delivery] = []
        fanned_out: list[uuid.UUID] = []
        failed: list[uuid.UUID] = []
        size = 0
        for event in events:
            if size > settings.WEBHOOKS_FAN_OUT_MAX_BYTES:
                more = True  # the rest stay waiting, for the next task
                break
            if event.school_id not in by_school:
                by_school[event.school_id] = list(
                    Subscription.objects.filter(school_id=event.school_id, is_active=True).order_by(
                        "id"
                    )
                )
            try:
                built = [
                    delivery_build(event=event, subscription=subscription, now=now)
                    for subscription in by_school[event.school_id]
                    if subscription.matches(event.type_id)
                ]
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("Fan-out of event %s failed; it will be tried again", event.id)
                failed.append(event.id)
                continue
            deliveries += built
            fanned_out.append(event.id)
            size += sum(len(delivery.body) for delivery in built)
        Delivery.objects.bulk_create(deliveries, batch_size=500)
        Event.objects.filter(pk__in=fanned_out).update(fanned_out_at=now)
        pending = [d.id for d in deliveries if d.status == DeliveryStatus.PENDING]
        transaction.on_commit(lambda: deliveries_enqueue(pending), robust=True)
    return _Batch(fanned_out=fanned_out, failed=failed, more=more)


def _events_fan_out_one_by_one(*, limit: int, passed_over: set[uuid.UUID]) -> int:
    """Fall-back for a batch that failed as a whole: each waiting event in its own transaction."""
    event_ids = [
        event_id
        for event_id in events_awaiting_fan_out(created_before=timezone.now(), limit=limit)
        if event_id not in passed_over
    ]
    fanned_out = 0
    for event_id in event_ids:
        try:
            event_fan_out(event_id=event_id)
            fanned_out += 1
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("Fan-out of event %s failed; it will be tried again", event_id)
    if len(event_ids) >= limit and fanned_out:
        fan_out_request(force=True)
    return fanned_out


def delivery_build(*, event: Event, subscription: Subscription, now: dt.datetime) -> Delivery:
    school = event.school
    delivery = Delivery(
        school_id=school.id,
        event=event,
        subscription=subscription,
        event_type=event.type_id,
        content_type=CONTENT_TYPES[subscription.content_type],
        created_at=now,
    )
    envelope = envelope_build(
        event_id=str(event.id),
        event_type=event.type_id,
        school_id=school.id,
        school_slug=school.slug,
        occurred_at=event.occurred_at,
        data=event.data,
        tz=school.tzinfo,
    )
    try:
        delivery.body, delivery.content_type = render_with_template(
            envelope,
            content_type=subscription.content_type,
            template=subscription.body_template,
            unix_timestamp=int(event.occurred_at.timestamp()),
        )
    except BodyTemplateError as exc:
        delivery.body = b""
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error_kind = ErrorKind.TEMPLATE
        delivery.last_error = f"The webhook body could not be rendered for this event: {exc}"
        logger.warning("Delivery of %s to %s not sent: %s", event.id, subscription.pk, exc)
        return delivery
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.enqueued_at = now
    return delivery


def deliveries_enqueue(ids: Iterable[uuid.UUID | str], *, countdown: float | None = None) -> None:
    """Send delivery tasks of up to ``WEBHOOKS_DELIVERY_BATCH_SIZE`` ids each, over one connection.

    A failure is logged, not raised: the rows are committed and the sweeper re-drives them.
    """
    ids = [str(delivery_id) for delivery_id in ids]
    if not ids:
        return
    size = settings.WEBHOOKS_DELIVERY_BATCH_SIZE
    app = current_app
    try:
        with app.producer_or_acquire() as producer:
            for start in range(0, len(ids), size):
                app.send_task(
                    DELIVER_TASK,
                    args=[ids[start : start + size]],
                    countdown=countdown,
                    producer=producer,
                )
    except Exception:
        logger.exception(
            "Could not enqueue %d deliveries; the sweeper will re-drive them", len(ids)
        )
