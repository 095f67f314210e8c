"""Re-driving deliveries: the sweeper for lost work, and retriggers by people."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from common.transactions import after_commit
from events.models import Event
from subscriptions.models import Subscription
from webhook_engine.errors import ErrorKind

from ..models import AttemptTrigger, CircuitState, Delivery, DeliveryStatus, EndpointState
from .fan_out import deliveries_enqueue, events_fan_out_waiting
from .heartbeats import SWEEPER, heartbeat_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    events_fanned_out: int
    deliveries_enqueued: int
    probes_sent: int = 0


def deliveries_sweep(*, limit: int = 2000) -> SweepResult:
    """Re-drive work whose message was lost; safe to run from several beat processes at once.

    Fans out events that were never fanned out, and enqueues pending deliveries that are due but
    have no live message: enqueued longer ago than ``WEBHOOKS_REDRIVE_AFTER_SECONDS`` without
    being picked up (a broker that lost its queue, a worker killed with messages in hand), or
    claimed by a worker whose lease has expired, or waiting for their webhook while nothing of
    that webhook is in flight to wake them. A webhook whose circuit is open gets one probe when
    its time has come, and nothing else. Rows locked by another sweeper are skipped.
    """
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.WEBHOOKS_REDRIVE_AFTER_SECONDS)
    try:
        fanned_out = events_fan_out_waiting(created_before=stale, limit=limit)
    except Exception:
        # Events that cannot be fanned out must not hold up the deliveries.
        logger.exception("Re-driving events awaiting fan-out failed; they will be tried again")
        fanned_out = 0

    in_flight = Delivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        status=DeliveryStatus.PENDING,
        leased_until__gte=now,
    )
    broken = EndpointState.objects.exclude(circuit_state=CircuitState.CLOSED).values("pk")
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now, is_test=False)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .filter(Q(enqueued_at__lt=stale) | (Q(enqueued_at__isnull=True) & ~Exists(in_flight)))
            .exclude(subscription_id__in=broken)
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
            after_commit(deliveries_enqueue, ids)
    probes = _probes_send(now=now, limit=limit)
    # A Send Test is sent in the request that made it; one still pending long after lost it.
    Delivery.objects.filter(
        is_test=True,
        status=DeliveryStatus.PENDING,
        created_at__lt=now - dt.timedelta(minutes=5),
    ).filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now)).update(
        status=DeliveryStatus.FAILED,
        next_attempt_at=None,
        leased_until=None,
        last_error_kind=ErrorKind.INTERRUPTED,
        last_error="The Send Test did not finish: the process sending it stopped.",
    )
    if fanned_out or ids or probes:
        logger.info(
            "Sweeper re-drove %d events and %d deliveries, sent %d probes",
            fanned_out,
            len(ids),
            probes,
        )
    heartbeat_record(name=SWEEPER, now=now)
    return SweepResult(
        events_fanned_out=fanned_out, deliveries_enqueued=len(ids), probes_sent=probes
    )


def _probes_send(*, now: dt.datetime, limit: int) -> int:
    """For each webhook whose circuit is open and due for a probe, enqueue its oldest due
    delivery (the claim lets exactly one through)."""
    endpoints = list(
        EndpointState.objects.exclude(circuit_state=CircuitState.CLOSED)
        .filter(probe_at__lte=now)
        .order_by("probe_at")
        .values_list("pk", flat=True)[:limit]
    )
    probes = []
    for endpoint in endpoints:
        oldest = (
            Delivery.objects.filter(
                subscription_id=endpoint, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
            )
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)
            .first()
        )
        if oldest is not None:
            probes.append(oldest)
    if probes:
        deliveries_enqueue(probes)
    return len(probes)


def _redrive(queryset: QuerySet[Delivery]) -> int:
    """Make final deliveries of the queryset due now for one manual attempt; return how many."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            queryset.select_for_update(skip_locked=True)
            .filter(status__in=[DeliveryStatus.FAILED, DeliveryStatus.DELIVERED], is_test=False)
            .values_list("id", flat=True)
        )
        if not ids:
            return 0
        Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            next_trigger=AttemptTrigger.MANUAL,
            enqueued_at=now,
            leased_until=None,
            lease_token=None,
        )
        after_commit(deliveries_enqueue, ids)
    return len(ids)


def delivery_retrigger(*, delivery: Delivery) -> bool:
    """Send a delivered or failed delivery again, once, now; False if it is pending already.

    The attempt is logged as manual and carries the same ``webhook-id``; if it fails the
    delivery is failed again (no automatic retries follow).
    """
    return _redrive(Delivery.objects.filter(pk=delivery.pk)) == 1


def deliveries_retrigger(*, delivery_ids: Iterable[uuid.UUID | str]) -> int:
    """``delivery_retrigger`` for many; returns how many were re-sent (pending ones are not)."""
    return _redrive(Delivery.objects.filter(pk__in=list(delivery_ids)))


def deliveries_recover(*, subscription: Subscription, since: dt.datetime) -> int:
    """Re-send every failed delivery of the webhook created at or after ``since``; return how many.

    For after an outage: fix the endpoint, re-enable the webhook, recover. Test deliveries are
    not re-sent.
    """
    return _redrive(
        Delivery.objects.filter(
            subscription=subscription, status=DeliveryStatus.FAILED, created_at__gte=since
        )
    )


def deliveries_prune(*, older_than_days: float, batch_size: int = 5000) -> int:
    """Delete final deliveries (with their attempts) created more than ``older_than_days`` ago,
    and the events left without deliveries; return how many deliveries went.

    Works in batches so the log can be pruned while it is in use; pending deliveries are kept
    whatever their age.
    """
    cutoff = timezone.now() - dt.timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(
            Delivery.objects.filter(created_at__lt=cutoff)
            .exclude(status=DeliveryStatus.PENDING)
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        with transaction.atomic():
            # Re-checked here: one retriggered since it was selected is kept.
            Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.PENDING).delete()
        deleted += len(ids)
    Event.objects.filter(
        created_at__lt=cutoff, fanned_out_at__isnull=False, deliveries=None
    ).delete()
    return deleted
