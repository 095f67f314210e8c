"""Writes of the deliveries app: fan-out, attempts, and the sweeper that re-drives lost work."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import transaction
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


# --- Attempts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    number: int
    token: uuid.UUID
    started_at: dt.datetime


def delivery_attempt(
    *, delivery_id: uuid.UUID | str, trigger: str = AttemptTrigger.AUTOMATIC
) -> DeliveryAttempt | None:
    """Make the next attempt of one due delivery; see ``deliveries_attempt``."""
    attempts = deliveries_attempt(delivery_ids=[delivery_id], trigger=trigger)
    return attempts[0] if attempts else None


def deliveries_attempt(
    *, delivery_ids: Iterable[uuid.UUID | str], trigger: str = AttemptTrigger.AUTOMATIC
) -> list[DeliveryAttempt]:
    """Attempt every due, unclaimed delivery among ``delivery_ids`` and record the attempts.

    The deliveries are claimed with one conditional UPDATE: a delivery that is final, not yet due
    or claimed by another worker is left alone, so a duplicate task message sends nothing. The
    requests go out concurrently (a slow receiver does not hold up the others) and no database
    transaction is open while they are in flight. The results are written in one transaction.

    After its attempt a delivery is ``delivered``, scheduled for its next automatic attempt, or
    ``failed`` with the reason of its last attempt. Manual and test attempts never schedule
    automatic ones. Returns the attempts made, in the order of ``delivery_ids``.
    """
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    claims = _deliveries_claim(delivery_ids=ids)
    if len(claims) < len(ids):
        claimed = {str(claim.delivery.pk) for claim in claims}
        _deliveries_requeue_early(delivery_ids=[i for i in ids if i not in claimed])
    if not claims:
        return []
    results = _deliveries_send(claims)
    return _deliveries_record(claims=claims, results=results, trigger=trigger)


def _deliveries_claim(*, delivery_ids: list[str]) -> list[_Claim]:
    """Take the lease on the due, unclaimed deliveries among ``delivery_ids``.

    One conditional UPDATE marks the rows this call won with a fresh lease token; any number of
    workers racing for the same rows each win a disjoint set. A row whose previous lease ran out
    without a result gets that lost attempt logged as interrupted.
    """
    now = timezone.now()
    token = uuid.uuid4()
    claimed = (
        Delivery.objects.filter(
            pk__in=delivery_ids, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(
            attempts=F("attempts") + 1,
            leased_until=now + dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
            lease_token=token,
            last_attempt_at=now,
        )
    )
    if not claimed:
        return []
    deliveries = {
        str(delivery.pk): delivery
        for delivery in Delivery.objects.select_related("subscription", "school").filter(
            pk__in=delivery_ids, lease_token=token
        )
    }
    retried = [d for d in deliveries.values() if d.attempts > 1]
    if retried:
        _attempts_interrupted_record(retried)
    return [
        _Claim(delivery=deliveries[i], number=deliveries[i].attempts, token=token, started_at=now)
        for i in delivery_ids
        if i in deliveries
    ]


def _attempts_interrupted_record(deliveries: list[Delivery]) -> None:
    """Log attempts whose worker stopped before recording them (the number before this one)."""
    logged = set(
        DeliveryAttempt.objects.filter(
            delivery__in=deliveries,
            number__in={delivery.attempts - 1 for delivery in deliveries},
        ).values_list("delivery_id", "number")
    )
    lost = [d for d in deliveries if (d.pk, d.attempts - 1) not in logged]
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=delivery,
                number=delivery.attempts - 1,
                trigger=AttemptTrigger.AUTOMATIC,
                started_at=delivery.last_attempt_at or timezone.now(),
                request_url=delivery.subscription.url,
                error_kind=ErrorKind.INTERRUPTED,
                error_message="The worker stopped before this attempt finished; it was retried.",
            )
            for delivery in lost
        ],
        ignore_conflicts=True,
    )


def _deliveries_requeue_early(*, delivery_ids: list[str]) -> None:
    """Messages that arrive just before their delivery is due (clock skew) are sent again."""
    if not delivery_ids:
        return
    now = timezone.now()
    horizon = now + dt.timedelta(seconds=settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS)
    early = Delivery.objects.filter(
        pk__in=delivery_ids,
        status=DeliveryStatus.PENDING,
        next_attempt_at__gt=now,
        next_attempt_at__lte=horizon,
        leased_until__isnull=True,
    ).values_list("pk", "next_attempt_at")
    for delivery_id, due in early:
        _deliveries_enqueue([delivery_id], countdown=(due - now).total_seconds())


_senders: dict[int, ThreadPoolExecutor] = {}


def _sender() -> ThreadPoolExecutor:
    """This process's pool of threads for concurrent requests (they never touch the database)."""
    pid = os.getpid()
    executor = _senders.get(pid)
    if executor is None:
        executor = ThreadPoolExecutor(
            max_workers=settings.WEBHOOKS_DELIVERY_BATCH_SIZE, thread_name_prefix="webhook-send"
        )
        _senders.clear()
        _senders[pid] = executor
    return executor


def _deliveries_send(claims: list[_Claim]) -> list[TransportResult]:
    # Everything the requests need is read here, in this thread, before they go out.
    jobs = [_send_job(claim) for claim in claims]
    if len(jobs) == 1:
        return [_send(*jobs[0])]
    return list(_sender().map(lambda job: _send(*job), jobs))


def _send_job(claim: _Claim) -> tuple[Transport | None, str, bytes, dict[str, str], str]:
    delivery = claim.delivery
    subscription = delivery.subscription
    if not subscription.is_active:
        reason = subscription.disabled_reason or "it was turned off"
        return None, subscription.url, b"", {}, reason
    headers = _request_headers(delivery=delivery, number=claim.number)
    return transport_get(), subscription.url, bytes(delivery.body), headers, ""


def _send(
    transport: Transport | None, url: str, body: bytes, headers: dict[str, str], disabled: str
) -> TransportResult:
    if transport is None:
        return TransportResult(
            request_headers={},
            error_kind=ErrorKind.DISABLED,
            error_message=f"The webhook is disabled ({disabled}); nothing was sent.",
        )
    return transport.send(
        url=url,
        body=body,
        headers=headers,
        timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
        max_body_bytes=settings.WEBHOOKS_RESPONSE_BODY_MAX_BYTES,
    )


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


_RECORDED_FIELDS = [
    "status",
    "next_attempt_at",
    "enqueued_at",
    "leased_until",
    "lease_token",
    "last_response_status",
    "last_error_kind",
    "last_error",
    "delivered_at",
]


def _deliveries_record(
    *, claims: list[_Claim], results: list[TransportResult], trigger: str
) -> list[DeliveryAttempt]:
    now = timezone.now()
    policy = retry_policy()
    attempts: list[DeliveryAttempt] = []
    soon: list[tuple[uuid.UUID, float]] = []
    for claim, result in zip(claims, results, strict=True):
        delivery = claim.delivery
        attempts.append(_attempt_build(claim=claim, trigger=trigger, result=result))
        delivery.leased_until = None
        delivery.lease_token = None
        delivery.last_response_status = result.status
        delivery.last_error_kind = result.error_kind
        delivery.last_error = result.error_message
        if result.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            delivery.enqueued_at = None
            continue
        next_at = None
        if trigger == AttemptTrigger.AUTOMATIC and is_retryable(
            error_kind=result.error_kind, status=result.status
        ):
            next_at = policy.next_attempt_at(
                created_at=delivery.created_at, attempts_made=claim.number, now=now
            )
        if next_at is None:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delivery.enqueued_at = None
            continue
        wait = (next_at - now).total_seconds()
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = next_at
        if wait <= settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS:
            delivery.enqueued_at = next_at
            soon.append((delivery.pk, wait))
        else:
            delivery.enqueued_at = None  # the sweeper sends it when it is due

    token = claims[0].token
    with transaction.atomic():
        owned = set(
            Delivery.objects.select_for_update()
            .filter(pk__in=[claim.delivery.pk for claim in claims], lease_token=token)
            .values_list("pk", flat=True)
        )
        kept = [a for a, claim in zip(attempts, claims, strict=True) if claim.delivery.pk in owned]
        if owned:
            Delivery.objects.bulk_update(
                [claim.delivery for claim in claims if claim.delivery.pk in owned],
                _RECORDED_FIELDS,
            )
            DeliveryAttempt.objects.bulk_create(kept)
        for delivery_id, wait in soon:
            if delivery_id in owned:
                transaction.on_commit(
                    lambda d=delivery_id, w=wait: _deliveries_enqueue([d], countdown=w),
                    robust=True,
                )
    lost = [a for a, claim in zip(attempts, claims, strict=True) if claim.delivery.pk not in owned]
    if lost:
        # These leases ran out mid-attempt; other workers may own the rows now. The attempts are
        # still logged where their numbers are free; the deliveries are left to their new owners.
        logger.warning("%d attempts finished after their lease ran out", len(lost))
        DeliveryAttempt.objects.bulk_create(lost, ignore_conflicts=True)
    return attempts


def _attempt_build(*, claim: _Claim, trigger: str, result: TransportResult) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery=claim.delivery,
        number=claim.number,
        trigger=trigger,
        started_at=claim.started_at,
        duration_ms=result.duration_ms,
        request_url=claim.delivery.subscription.url,
        request_headers=headers_redact(result.request_headers),
        response_status=result.status,
        response_headers=result.headers,
        response_body=result.body.decode("utf-8", errors="replace"),
        response_body_truncated=result.body_truncated,
        error_kind=result.error_kind,
        error_message=result.error_message,
    )


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
