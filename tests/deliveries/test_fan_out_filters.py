"""Fan-out applies each webhook's payload filter before a delivery is built: a filtered-out event
costs no delivery, no attempt and no log row, with no query per event per webhook."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import delivery_test_send, events_fan_out_pending, subscriptions_receiving
from events.models import Event
from events.services import event_publish
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

GROUP_12 = {"field": "group.id", "op": "eq", "value": 12}


def _publish(school, group, type="course.created"):
    return event_publish(
        school=school, type=type, data={"course": {"id": "c"}, "group": {"id": group}}
    )


def test_an_event_the_filter_refuses_gets_no_delivery_and_no_attempt(school, settings):
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 1000
    group_12 = SubscriptionFactory(school=school, topics=["course.*"], payload_filter=GROUP_12)
    everything = SubscriptionFactory(school=school, topics=["course.*"])
    passes = _publish(school, 12)
    refused = _publish(school, 13)
    no_group = event_publish(school=school, type="course.created", data={"course": {"id": "c"}})

    assert events_fan_out_pending() == 3

    assert set(Delivery.objects.values_list("event_id", "subscription_id")) == {
        (passes.id, group_12.id),
        (passes.id, everything.id),
        (refused.id, everything.id),
        (no_group.id, everything.id),
    }
    assert (
        not DeliveryAttempt.objects.filter(delivery__subscription=group_12)
        .exclude(delivery__event=passes)
        .exists()
    )
    # Every event is done with, delivered or not.
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()


def test_the_filter_applies_to_events_fanned_out_in_pieces(school, settings):
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 2
    passing = [
        SubscriptionFactory(school=school, topics=["*"], payload_filter=GROUP_12) for _ in range(3)
    ]
    for group in (11, 13):
        SubscriptionFactory(
            school=school, topics=["*"], payload_filter={**GROUP_12, "value": group}
        )
    _publish(school, 12)

    assert events_fan_out_pending() == 1

    assert set(Delivery.objects.values_list("subscription_id", flat=True)) == {
        webhook.id for webhook in passing
    }


def test_a_batch_reads_the_filters_with_the_webhooks_in_one_query(school, settings):
    for n in range(20):
        SubscriptionFactory(
            school=school, topics=["course.*"], payload_filter={**GROUP_12, "value": n % 4}
        )
    for n in range(8):
        _publish(school, n)

    with CaptureQueriesContext(connection) as queries:
        events_fan_out_pending()

    webhook_reads = [
        q for q in queries.captured_queries if "subscriptions_subscription" in q["sql"]
    ]
    assert len(webhook_reads) == 1
    assert Delivery.objects.count() == 4 * 5  # events 0..3 pass 5 webhooks each, 4..7 none


def test_matching_is_one_function_topics_then_filter(school):
    courses = SubscriptionFactory(school=school, topics=["course.*"], payload_filter=GROUP_12)
    students = SubscriptionFactory(school=school, topics=["student.*"])
    event = _publish(school, 12)
    other = _publish(school, 99)

    assert subscriptions_receiving(event=event, subscriptions=[courses, students]) == [courses]
    assert subscriptions_receiving(event=other, subscriptions=[courses, students]) == []


def test_a_stored_filter_that_no_longer_compiles_passes_nothing_and_is_logged(school, caplog):
    broken = SubscriptionFactory(school=school, topics=["*"], payload_filter={"any": []})
    event = _publish(school, 12)

    assert subscriptions_receiving(event=event, subscriptions=[broken]) == []
    assert "is invalid, it passes nothing" in caplog.text


def test_send_test_ignores_the_filter(school, receiver):
    webhook = SubscriptionFactory(
        school=school,
        url=receiver.url("/hook"),
        topics=["course.*"],
        payload_filter={"field": "group.id", "op": "eq", "value": -1},
    )

    attempt = delivery_test_send(subscription=webhook, event_type="course.created")

    assert attempt.response_status == 200
    assert len(receiver.requests) == 1


def test_a_filter_that_fails_on_an_event_costs_only_its_own_webhook_that_event(
    school, settings, monkeypatch, caplog
):
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 1000
    broken = SubscriptionFactory(school=school, topics=["course.*"], payload_filter=GROUP_12)
    everything = SubscriptionFactory(school=school, topics=["course.*"])
    from deliveries.services import fan_out

    def predicate_that_raises(subscription):
        if subscription.pk == broken.pk:
            return lambda data: 1 / 0
        return lambda data: True

    monkeypatch.setattr(fan_out, "_payload_predicate", predicate_that_raises)
    event = _publish(school, 12)

    assert events_fan_out_pending() == 1

    assert list(Delivery.objects.values_list("event_id", "subscription_id")) == [
        (event.id, everything.id)
    ]
    assert Event.objects.get(pk=event.pk).fanned_out_at is not None
    assert f"Payload filter of webhook {broken.pk} failed on event {event.pk}" in caplog.text
