"""End to end with a payload filter: a real worker fans out and delivers, a real receiver counts.
A filter that half of 100 events pass creates exactly 50 deliveries, and the receiver gets
exactly those 50; the events it refuses cost no delivery and no attempt."""

import time

import pytest
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import deliveries_sweep
from events.models import Event
from events.services import event_publish
from subscriptions.services import subscription_payload_filter_errors
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EVENTS = 100


def _wait(condition, timeout=60.0, what="the worker"):
    """Wait for ``condition``, running the sweeper every 2 s as beat does in a deployment (a
    delivery that waited for its webhook's slot can miss the wake-up; the sweeper re-drives it)."""
    deadline = time.monotonic() + timeout
    swept = time.monotonic()
    while time.monotonic() < deadline:
        if condition():
            return
        if time.monotonic() - swept > 2.0:
            deliveries_sweep()
            swept = time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {what}")


def test_a_filter_half_the_events_pass_creates_exactly_fifty_deliveries(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    group_12 = SubscriptionFactory(
        school=school,
        url=receiver.url("/group-12"),
        topics=["course.created"],
        payload_filter={
            "all": [
                {"field": "group.id", "op": "eq", "value": 12},
                {"field": "course.id", "op": "starts_with", "value": "c-"},
            ]
        },
    )
    assert subscription_payload_filter_errors(subscription=group_12) == []
    everything = SubscriptionFactory(school=school, url=receiver.url("/all"), topics=["*"])

    with transaction.atomic():
        events = [
            event_publish(
                school=school,
                type="course.created",
                data={"course": {"id": f"c-{n}"}, "group": {"id": 12 if n % 2 else 7}},
            )
            for n in range(EVENTS)
        ]
    passing = {str(event.id) for event in events if event.data["group"]["id"] == 12}
    assert len(passing) == 50

    _wait(lambda: not Event.objects.filter(school=school, fanned_out_at__isnull=True).exists())
    _wait(
        lambda: not Delivery.objects.filter(school=school, status=DeliveryStatus.PENDING).exists()
    )
    _wait(lambda: len(receiver.received()) >= EVENTS + 50, what="the receiver")

    filtered = Delivery.objects.filter(subscription=group_12)
    assert filtered.count() == 50
    assert {str(event_id) for event_id in filtered.values_list("event_id", flat=True)} == passing
    assert set(filtered.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert DeliveryAttempt.objects.filter(delivery__subscription=group_12).count() == 50
    assert Delivery.objects.filter(subscription=everything).count() == EVENTS
    received = receiver.received("/group-12")
    assert len(received) == 50
    ids = {Webhook(group_12.secret).verify(r.body, r.headers)["id"] for r in received}
    assert ids == passing
    assert len(receiver.received("/all")) == EVENTS
