"""Claiming due deliveries: one conditional UPDATE takes the lease, so a duplicate task message
sends nothing and any number of workers share the rows without sending one twice."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Case, F, Prefetch, Q, UUIDField, Value, When
from django.utils import timezone

from subscriptions.models import SigningSecret
from subscriptions.selectors import signing_secrets_active_q
from webhook_engine.errors import ErrorKind

from ..models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from .fan_out import deliveries_enqueue


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds the lease on, and the attempt it is about to make."""

    delivery: Delivery
    number: int
    token: uuid.UUID
    started_at: dt.datetime
    trigger: str


def deliveries_claim(*, delivery_ids: list[str]) -> list[Claim]:
    """Take the lease on the due, unclaimed deliveries among ``delivery_ids``.

    One conditional UPDATE marks the rows this call won with a fresh lease token; any number of
    workers racing for the same rows each win a disjoint set. A row whose previous lease ran out
    without a result gets that lost attempt logged as interrupted.
    """
    now = timezone.now()
    token, token_after_lost_lease = uuid.uuid4(), uuid.uuid4()
    claimed = (
        Delivery.objects.filter(
            pk__in=delivery_ids, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(
            attempts=F("attempts") + 1,
            leased_until=now + dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
            # A row still under an (expired) lease was claimed by a worker that never finished.
            lease_token=Case(
                When(leased_until__isnull=True, then=Value(token)),
                default=Value(token_after_lost_lease),
                output_field=UUIDField(),
            ),
            last_attempt_at=now,
        )
    )
    if not claimed:
        return []
    secrets = SigningSecret.objects.filter(signing_secrets_active_q(now)).order_by("-created_at")
    deliveries = {
        str(delivery.pk): delivery
        for delivery in Delivery.objects.select_related("subscription", "school")
        .prefetch_related(
            Prefetch("subscription__signing_secrets", queryset=secrets, to_attr="active_secrets")
        )
        .filter(pk__in=delivery_ids, lease_token__in=[token, token_after_lost_lease])
    }
    interrupted = [d for d in deliveries.values() if d.lease_token == token_after_lost_lease]
    if interrupted:
        _attempts_interrupted_record(interrupted)
    return [
        Claim(
            delivery=deliveries[i],
            number=deliveries[i].attempts,
            token=token if deliveries[i].lease_token == token else token_after_lost_lease,
            started_at=now,
            trigger=deliveries[i].next_trigger,
        )
        for i in delivery_ids
        if i in deliveries
    ]


def _attempts_interrupted_record(deliveries: list[Delivery]) -> None:
    """Log the attempts whose worker stopped before recording them (the number before this one);
    a record that the late worker did write is kept."""
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
            for delivery in deliveries
        ],
        ignore_conflicts=True,
    )


def deliveries_requeue_early(*, delivery_ids: list[str]) -> None:
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
        if due is not None:
            deliveries_enqueue([delivery_id], countdown=(due - now).total_seconds())
