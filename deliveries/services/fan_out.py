"""Fan-out: one delivery per matching webhook, its body rendered once, and the task messages."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from events.envelope import envelope_build
from events.models import Event
from subscriptions.bodies import BodyTemplateError, CompiledBody, body_compile
from subscriptions.models import Subscription
from subscriptions.selectors import subscriptions_matching

from ..models import Delivery, DeliveryStatus
from ..payloads import CONTENT_TYPES, render
from ..transport import ErrorKind

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
        body: CompiledBody | None = None
        if subscription.body_template.strip():
            body = body_compile(subscription.body_template)
        delivery.body, delivery.content_type = render(
            envelope,
            content_type=subscription.content_type,
            body=body,
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
