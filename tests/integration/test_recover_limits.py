"""A recovery after an outage sends the failed deliveries again within the webhook's limits: a
receiver that just came back is not flooded with every one of them at once, and the workers'
send slots stay shared with the other schools."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from deliveries.models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import deliveries_recover
from tests.deliveries.factories import delivery_create
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ANSWER_SECONDS = 0.3


def _most_at_once(arrivals: list[float]) -> int:
    """The most requests that arrived within one answer's time of each other: each is
    answered ``ANSWER_SECONDS`` after it arrives, so these were in flight together."""
    arrivals = sorted(arrivals)
    return max(
        sum(1 for later in arrivals[i:] if later - first < ANSWER_SECONDS * 0.9)
        for i, first in enumerate(arrivals)
    )


def statuses_once_delivered(subscription, count: int, timeout: float = 60) -> set[str]:
    """The statuses of the webhook's deliveries once ``count`` are delivered (or after
    ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while (
        Delivery.objects.filter(subscription=subscription, status=DeliveryStatus.DELIVERED).count()
        < count
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    return set(Delivery.objects.filter(subscription=subscription).values_list("status", flat=True))


def test_recovered_deliveries_go_within_the_webhooks_concurrency_oldest_first(
    worker_process, school, receiver
):
    # Given a webhook of concurrency 2 whose receiver was down: 12 deliveries failed
    receiver.script("/back", default=Reply(status=200, delay_seconds=ANSWER_SECONDS))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/back"), max_concurrency=2)
    failed = [delivery_create(subscription) for _ in range(12)]

    # When the receiver is back and the failed deliveries are recovered
    recovered = deliveries_recover(
        subscription=subscription, since=timezone.now() - dt.timedelta(days=1)
    )
    statuses = statuses_once_delivered(subscription, 12)

    # Then every one is delivered, never more than two at a time, the oldest first
    assert recovered == 12
    assert statuses == {DeliveryStatus.DELIVERED}
    arrivals = [request.at for request in receiver.received("/back")]
    assert len(arrivals) == 12
    assert _most_at_once(arrivals) <= 2
    first_two = DeliveryAttempt.objects.filter(number=2).order_by("started_at")[:2]
    assert {attempt.delivery_id for attempt in first_two} == {failed[0].pk, failed[1].pk}
    # each logged as a recovery, after its first (failed) attempt
    assert set(DeliveryAttempt.objects.filter(number=2).values_list("trigger", flat=True)) == {
        AttemptTrigger.RECOVERY
    }
