"""A "send now" of a large selection: each webhook gets at once as many as it has free slots, and
rest follow within its limits. Sent all at once, thousands of them would flood a receiver and,
on a dead one, hold every worker's send slots from the other schools' webhooks."""

from __future__ import annotations

import pytest

from deliveries.models import AttemptTrigger, DeliveryAttempt, DeliveryStatus
from deliveries.services import deliveries_retrigger
from tests.deliveries.factories import delivery_create
from tests.integration.test_recover_limits import (
    ANSWER_SECONDS,
    _most_at_once,
    statuses_once_delivered,
)
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_selection_sent_now_goes_within_the_webhooks_concurrency_oldest_first(
    worker_process, school, receiver
):
    # Given a webhook of concurrency 2 and 12 of its failed deliveries
    receiver.script("/back", default=Reply(status=200, delay_seconds=ANSWER_SECONDS))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/back"), max_concurrency=2)
    failed = [delivery_create(subscription) for _ in range(12)]

    # When a support engineer selects them all and sends them now
    result = deliveries_retrigger(delivery_ids=[delivery.pk for delivery in reversed(failed)])
    statuses = statuses_once_delivered(subscription, 12)

    # Then every one is delivered, never more than two at a time, the oldest first
    assert (result.queued, result.in_turn) == (12, 10)
    assert statuses == {DeliveryStatus.DELIVERED}
    arrivals = [request.at for request in receiver.received("/back")]
    assert len(arrivals) == 12
    assert _most_at_once(arrivals) <= 2
    started = list(
        DeliveryAttempt.objects.filter(number=2)
        .order_by("started_at")
        .values_list("delivery_id", flat=True)
    )
    assert set(started[:2]) == {failed[0].pk, failed[1].pk}
    # in their order: two at a time, so none started more than one place from its own
    rank = {delivery.pk: place for place, delivery in enumerate(failed)}
    assert all(abs(rank[pk] - place) <= 1 for place, pk in enumerate(started))
    # the first two by hand at once, the rest within the webhook's limits
    triggers = list(DeliveryAttempt.objects.filter(number=2).values_list("trigger", flat=True))
    assert sorted(triggers) == [AttemptTrigger.MANUAL] * 2 + [AttemptTrigger.RECOVERY] * 10
