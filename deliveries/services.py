"""Writes of the deliveries app: fan-out, attempts, and the sweeper that re-drives lost work."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from events.models import Event
from events.selectors import events_awaiting_fan_out
from schools.models import School
from subscriptions.models import Subscription
from subscriptions.selectors import subscriptions_matching

from .models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from .payloads import envelope_build, render
from .retry import RetryPolicy, is_retryable
from .signing import message_id, sign_v1, signature_header
from .transport import DestinationPolicy, ErrorKind, Transport, TransportResult

logger = logging.getLogger(__name__)

DELIVER_TASK = "deliveries.deliver"
REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


def retry_policy() -> RetryPolicy:
    """The retry schedule configured in settings."""
    return RetryPolicy(
        base_seconds=settings.WEBHOOKS_RETRY_BASE_SECONDS,
        max_attempts=settings.WEBHOOKS_RETRY_MAX_ATTEMPTS,
        window_seconds=settings.WEBHOOKS_RETRY_WINDOW_SECONDS,
        jitter=settings.WEBHOOKS_RETRY_JITTER,
    )


_transports: dict[tuple[int, tuple[str, ...]], Transport] = {}


def transport_get() -> Transport:
    """This process's transport (connection pools are not shared across forks)."""
    key = (os.getpid(), tuple(settings.WEBHOOKS_ALLOWED_NETWORKS))
    transport = _transports.get(key)
    if transport is None:
        transport = Transport(
            policy=DestinationPolicy.from_cidrs(settings.WEBHOOKS_ALLOWED_NETWORKS)
        )
        _transports.clear()
        _transports[key] = transport
    return transport


# --- Fan-out --------------------------------------------------------------------------------


def event_fan_out(*, event_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Create one pending delivery per matching active subscription and enqueue them.

    Idempotent: an event is fanned out once (the row is locked and marked in one transaction);
    later calls return ``[]``. Each body is rendered here, once, and never again.
    """
    now = timezone.now()
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
            _delivery_build(event=event, subscription=subscription, now=now)
            for subscription in subscriptions
        ]
        Delivery.objects.bulk_create(deliveries)
        Event.objects.filter(pk=event.pk).update(fanned_out_at=now)
        ids = [delivery.id for delivery in deliveries]
        transaction.on_commit(lambda: _deliveries_enqueue(ids), robust=True)
    return ids


def _delivery_build(*, event: Event, subscription: Subscription, now: dt.datetime) -> Delivery:
    school: School = event.school
    envelope = envelope_build(
        event_id=str(event.id),
        event_type=event.type_id,
        school_id=school.id,
        school_slug=school.slug,
        occurred_at=event.occurred_at,
        data=event.data,
        tz=school.tzinfo,
    )
    body, content_type = render(envelope, subscription.content_type)
    return Delivery(
        school_id=school.id,
        event=event,
        subscription=subscription,
        event_type=event.type_id,
        body=body,
        content_type=content_type,
        status=DeliveryStatus.PENDING,
        created_at=now,
        next_attempt_at=now,
        enqueued_at=now,
    )


def _deliveries_enqueue(ids: Iterable[uuid.UUID], *, countdown: float | None = None) -> None:
    """Send one delivery task per id over a single broker connection.

    A failure is logged, not raised: the rows are committed and the sweeper re-drives them.
    """
    ids = list(ids)
    if not ids:
        return
    app = current_app
    try:
        with app.producer_or_acquire() as producer:
            for delivery_id in ids:
                app.send_task(
                    DELIVER_TASK, args=[str(delivery_id)], countdown=countdown, producer=producer
                )
    except Exception:
        logger.exception(
            "Could not enqueue %d deliveries; the sweeper will re-drive them", len(ids)
        )


# --- Attempts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    number: int
    lease_until: dt.datetime
    started_at: dt.datetime


def delivery_attempt(
    *, delivery_id: uuid.UUID | str, trigger: str = AttemptTrigger.AUTOMATIC
) -> DeliveryAttempt | None:
    """Make the next attempt of a due delivery and record it.

    Claims the row first (conditional, under a row lock): a delivery that is final, not yet due or
    claimed by another worker is left alone and ``None`` is returned, so a duplicate task message
    sends nothing. No database transaction is open while the request is in flight.

    After the attempt the delivery is ``delivered``, scheduled for its next automatic attempt, or
    ``failed`` with the reason of its last attempt. Manual and test attempts never schedule
    automatic ones.
    """
    claim = _delivery_claim(delivery_id=delivery_id)
    if claim is None:
        _delivery_requeue_if_early(delivery_id=delivery_id)
        return None
    delivery = claim.delivery
    subscription = delivery.subscription
    if not subscription.is_active:
        reason = subscription.disabled_reason or "it was turned off"
        result = TransportResult(
            request_headers={},
            error_kind=ErrorKind.DISABLED,
            error_message=f"The webhook is disabled ({reason}); nothing was sent.",
        )
    else:
        headers = _request_headers(delivery=delivery, number=claim.number)
        result = transport_get().send(
            url=subscription.url,
            body=bytes(delivery.body),
            headers=headers,
            timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
            max_body_bytes=settings.WEBHOOKS_RESPONSE_BODY_MAX_BYTES,
        )
    return _delivery_record(claim=claim, trigger=trigger, result=result)


def _delivery_claim(*, delivery_id: uuid.UUID | str) -> _Claim | None:
    now = timezone.now()
    lease_until = now + dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription", "school")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .first()
        )
        if delivery is None:
            return None
        if delivery.leased_until is not None:
            _attempt_interrupted_record(delivery)
        Delivery.objects.filter(pk=delivery.pk).update(
            attempts=F("attempts") + 1, leased_until=lease_until, last_attempt_at=now
        )
    delivery.attempts += 1
    delivery.leased_until = lease_until
    return _Claim(
        delivery=delivery, number=delivery.attempts, lease_until=lease_until, started_at=now
    )


def _attempt_interrupted_record(delivery: Delivery) -> None:
    """The previous claim's lease ran out without a result: its worker stopped mid-attempt."""
    if delivery.attempts == 0:
        return
    exists = DeliveryAttempt.objects.filter(delivery=delivery, number=delivery.attempts).exists()
    if exists:
        return
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        trigger=AttemptTrigger.AUTOMATIC,
        started_at=delivery.last_attempt_at or timezone.now(),
        request_url=delivery.subscription.url,
        error_kind=ErrorKind.INTERRUPTED,
        error_message="The worker stopped before this attempt finished; it was retried.",
    )


def _delivery_requeue_if_early(*, delivery_id: uuid.UUID | str) -> None:
    """A message that arrives just before its delivery is due (clock skew) is sent again."""
    now = timezone.now()
    horizon = now + dt.timedelta(seconds=settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS)
    due = (
        Delivery.objects.filter(
            pk=delivery_id,
            status=DeliveryStatus.PENDING,
            next_attempt_at__gt=now,
            next_attempt_at__lte=horizon,
            leased_until__isnull=True,
        )
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if due is not None:
        _deliveries_enqueue([uuid.UUID(str(delivery_id))], countdown=(due - now).total_seconds())


def _request_headers(*, delivery: Delivery, number: int) -> dict[str, str]:
    subscription = delivery.subscription
    school = delivery.school
    msg_id = message_id(delivery.id)
    timestamp = int(timezone.now().timestamp())
    body = bytes(delivery.body)
    signature = sign_v1(
        secret=subscription.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body
    )
    return {
        "Content-Type": delivery.content_type,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([signature]),
        "X-Webhook-Event": delivery.event_type,
        "X-Webhook-School": str(school.id),
        "X-Webhook-Lang": school.language,
        "X-Webhook-Attempt": str(number),
    }


def headers_redact(headers: dict[str, str]) -> dict[str, str]:
    """Headers as they may be stored and shown: credentials replaced by a marker."""
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS else value
        for name, value in headers.items()
    }


def _delivery_record(*, claim: _Claim, trigger: str, result: TransportResult) -> DeliveryAttempt:
    delivery = claim.delivery
    now = timezone.now()
    attempt = DeliveryAttempt(
        delivery=delivery,
        number=claim.number,
        trigger=trigger,
        started_at=claim.started_at,
        duration_ms=result.duration_ms,
        request_url=delivery.subscription.url,
        request_headers=headers_redact(result.request_headers),
        response_status=result.status,
        response_headers=result.headers,
        response_body=result.body.decode("utf-8", errors="replace"),
        response_body_truncated=result.body_truncated,
        error_kind=result.error_kind,
        error_message=result.error_message,
    )
    changes: dict[str, object] = {
        "leased_until": None,
        "last_response_status": result.status,
        "last_error_kind": result.error_kind,
        "last_error": result.error_message,
    }
    countdown: float | None = None
    if result.ok:
        changes.update(
            status=DeliveryStatus.DELIVERED,
            delivered_at=now,
            next_attempt_at=None,
            enqueued_at=None,
        )
    else:
        next_at = None
        if trigger == AttemptTrigger.AUTOMATIC and is_retryable(
            error_kind=result.error_kind, status=result.status
        ):
            next_at = retry_policy().next_attempt_at(
                created_at=delivery.created_at, attempts_made=claim.number, now=now
            )
        if next_at is None:
            changes.update(status=DeliveryStatus.FAILED, next_attempt_at=None, enqueued_at=None)
        else:
            wait = (next_at - now).total_seconds()
            soon = wait <= settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS
            countdown = wait if soon else None
            changes.update(
                status=DeliveryStatus.PENDING,
                next_attempt_at=next_at,
                enqueued_at=next_at if soon else None,
            )

    with transaction.atomic():
        owned = Delivery.objects.filter(pk=delivery.pk, leased_until=claim.lease_until).update(
            **changes
        )
        try:
            with transaction.atomic():
                attempt.save()
        except IntegrityError:
            logger.warning(
                "Attempt %s of delivery %s was already recorded", claim.number, delivery.pk
            )
        if not owned:
            logger.warning(
                "Delivery %s: the lease ran out during attempt %s; its result is logged only",
                delivery.pk,
                claim.number,
            )
        elif countdown is not None:
            delivery_id = delivery.pk
            transaction.on_commit(
                lambda: _deliveries_enqueue([delivery_id], countdown=countdown), robust=True
            )
    for name, value in changes.items():
        setattr(delivery, name, value)
    return attempt


# --- Sweeper --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    events_fanned_out: int
    deliveries_enqueued: int


def deliveries_sweep(*, limit: int = 1000) -> SweepResult:
    """Re-drive work whose message was lost; safe to run from several beat processes at once.

    Fans out events that were never fanned out, and enqueues pending deliveries that are due but
    have no live message: never enqueued (long retry gaps), enqueued longer ago than
    ``WEBHOOKS_REDRIVE_AFTER_SECONDS`` without being picked up, or claimed by a worker whose
    lease has expired. Rows locked by another sweeper are skipped.
    """
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.WEBHOOKS_REDRIVE_AFTER_SECONDS)
    fanned_out = 0
    for event_id in events_awaiting_fan_out(created_before=stale, limit=limit):
        if event_fan_out(event_id=event_id):
            fanned_out += 1

    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
            transaction.on_commit(lambda: _deliveries_enqueue(ids), robust=True)
    if fanned_out or ids:
        logger.info("Sweeper re-drove %d events and %d deliveries", fanned_out, len(ids))
    return SweepResult(events_fanned_out=fanned_out, deliveries_enqueued=len(ids))
