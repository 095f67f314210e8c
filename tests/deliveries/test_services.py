import datetime as dt
import json
import threading

import pytest
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deliveries.models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import deliveries_sweep, delivery_attempt, event_fan_out
from events.models import Event
from events.services import event_publish
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def _publish(school, type="course.created", data=None, **kwargs):
    return event_publish(school=school, type=type, data=data or {"course": {"id": "c1"}}, **kwargs)


def test_fan_out_creates_one_delivery_per_matching_active_subscription(school):
    exact = SubscriptionFactory(school=school, topics=["course.created"])
    wildcard = SubscriptionFactory(school=school, topics=["student.*", "course.*"])
    everything = SubscriptionFactory(school=school, topics=["*"])
    SubscriptionFactory(school=school, topics=["student.*"])
    SubscriptionFactory(school=school, topics=["*"], is_active=False)
    SubscriptionFactory(school=SchoolFactory(), topics=["*"])
    event = _publish(school)

    ids = event_fan_out(event_id=event.id)

    deliveries = Delivery.objects.filter(event=event)
    assert set(ids) == set(deliveries.values_list("id", flat=True))
    assert {d.subscription_id for d in deliveries} == {exact.id, wildcard.id, everything.id}
    assert {d.status for d in deliveries} == {DeliveryStatus.PENDING}
    assert Event.objects.get(pk=event.pk).fanned_out_at is not None


def test_fan_out_renders_the_envelope_once_in_the_schools_time_zone(school):
    SubscriptionFactory(school=school, topics=["*"])
    event = _publish(
        school,
        data={"course": {"id": "c1", "start": dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.UTC)}},
        occurred_at=dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC),
    )

    event_fan_out(event_id=event.id)

    delivery = Delivery.objects.get(event=event)
    assert delivery.content_type == "application/json"
    assert json.loads(bytes(delivery.body)) == {
        "id": str(event.id),
        "type": "course.created",
        "school": {"id": school.id, "slug": "lycee-victor-hugo"},
        "timestamp": "2026-03-29T01:30:00+01:00",
        "data": {"course": {"id": "c1", "start": "2026-03-29T04:30:00+02:00"}},
    }


def test_fan_out_is_idempotent(school):
    SubscriptionFactory(school=school, topics=["*"])
    event = _publish(school)

    first = event_fan_out(event_id=event.id)
    second = event_fan_out(event_id=event.id)

    assert len(first) == 1
    assert second == []
    assert Delivery.objects.filter(event=event).count() == 1


def _delivery_to(school, url, **subscription_fields):
    subscription = SubscriptionFactory(school=school, url=url, **subscription_fields)
    event = _publish(school)
    [delivery_id] = event_fan_out(event_id=event.id)
    return Delivery.objects.get(pk=delivery_id), subscription


def test_a_successful_attempt_is_signed_logged_and_marks_the_delivery_delivered(school, receiver):
    delivery, subscription = _delivery_to(school, receiver.url("/ok"))
    receiver.script("/ok", Reply(status=200, body=b"thanks"))

    attempt = delivery_attempt(delivery_id=delivery.id)

    [received] = receiver.received("/ok")
    assert received.body == bytes(delivery.body)
    payload = Webhook(subscription.secret).verify(received.body, received.headers)
    assert payload["type"] == "course.created"
    assert received.headers["webhook-id"] == f"msg_{delivery.id.hex}"
    assert received.headers["x-webhook-event"] == "course.created"
    assert received.headers["x-webhook-school"] == str(school.id)
    assert received.headers["x-webhook-lang"] == "fr"
    assert received.headers["x-webhook-attempt"] == "1"
    assert received.headers["content-type"] == "application/json"

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.last_response_status) == (1, 200)
    assert delivery.next_attempt_at is None
    assert delivery.leased_until is None
    assert attempt.number == 1
    assert attempt.trigger == AttemptTrigger.AUTOMATIC
    assert (attempt.response_status, attempt.response_body, attempt.error_kind) == (
        200,
        "thanks",
        "",
    )
    assert attempt.request_headers["webhook-id"] == f"msg_{delivery.id.hex}"
    assert attempt.request_url == receiver.url("/ok")


def test_a_failed_attempt_schedules_the_next_one_on_the_policy(school, receiver, settings):
    settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS = 0  # keep the retry out of the broker in this test
    delivery, _ = _delivery_to(school, receiver.url("/down"))
    receiver.script("/down", Reply(status=500, body=b"oops"))

    delivery_attempt(delivery_id=delivery.id)
    finished = timezone.now()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert delivery.last_response_status == 500
    assert delivery.last_error_kind == ErrorKind.HTTP_STATUS
    assert delivery.last_error == "The receiver answered 500 Reply."
    # Shrunk test schedule (no jitter): the second attempt is due 0.2 s after the first.
    gap = dt.timedelta(seconds=0.2)
    assert delivery.created_at + gap <= delivery.next_attempt_at <= finished + gap
    assert delivery.enqueued_at is None  # beyond the countdown horizon: the sweeper sends it


def test_the_last_failed_attempt_makes_the_delivery_failed_with_its_reason(school, receiver):
    delivery, _ = _delivery_to(school, receiver.url("/down"))
    receiver.script("/down", default=Reply(status=502))
    Delivery.objects.filter(pk=delivery.pk).update(attempts=4)  # the shrunk schedule has 5

    attempt = delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert attempt.number == 5
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    assert delivery.last_error == "The receiver answered 502 Reply."


def test_a_delivery_that_is_final_or_not_due_is_not_attempted(school, receiver):
    delivery, _ = _delivery_to(school, receiver.url("/x"))
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )

    assert delivery_attempt(delivery_id=delivery.id) is None

    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None
    )
    assert delivery_attempt(delivery_id=delivery.id) is None
    assert receiver.received() == []
    assert DeliveryAttempt.objects.count() == 0


def test_a_disabled_subscription_is_not_called_and_the_reason_is_recorded(school, receiver):
    delivery, subscription = _delivery_to(school, receiver.url("/x"))
    subscription.is_active = False
    subscription.disabled_reason = "Turned off by the school."
    subscription.save()

    attempt = delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert receiver.received() == []
    assert attempt.error_kind == ErrorKind.DISABLED
    assert "Turned off by the school." in attempt.error_message
    assert delivery.status == DeliveryStatus.FAILED


def test_the_sweeper_fans_out_events_whose_message_was_lost(school, settings):
    SubscriptionFactory(school=school, topics=["*"])
    event = _publish(school)  # its hand-off never runs in this test: a lost message
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))

    result = deliveries_sweep()

    assert result.events_fanned_out == 1
    assert Delivery.objects.filter(event=event).count() == 1


def test_the_sweeper_enqueues_due_deliveries_without_a_live_message(school):
    delivery, _ = _delivery_to(school, "http://127.0.0.1:9/hook")
    long_ago = timezone.now() - dt.timedelta(minutes=10)
    Delivery.objects.filter(pk=delivery.pk).update(enqueued_at=long_ago, next_attempt_at=long_ago)
    fresh, _ = _delivery_to(SchoolFactory(), "http://127.0.0.1:9/other")  # enqueued just now

    result = deliveries_sweep()

    assert result.deliveries_enqueued == 1
    delivery.refresh_from_db()
    fresh_before = fresh.enqueued_at
    fresh.refresh_from_db()
    assert delivery.enqueued_at > long_ago
    assert fresh.enqueued_at == fresh_before


def test_an_attempt_whose_worker_died_is_recorded_as_interrupted_and_retried(school, receiver):
    delivery, _ = _delivery_to(school, receiver.url("/back"))
    expired = timezone.now() - dt.timedelta(seconds=1)
    # A worker claimed attempt 1 and vanished: its lease ran out with no result written.
    Delivery.objects.filter(pk=delivery.pk).update(
        attempts=1, leased_until=expired, last_attempt_at=expired, enqueued_at=None
    )

    assert deliveries_sweep().deliveries_enqueued == 1
    attempt = delivery_attempt(delivery_id=delivery.id)

    first, second = DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    assert (first.number, first.error_kind) == (1, ErrorKind.INTERRUPTED)
    assert (second.number, second.response_status) == (2, 200)
    assert attempt == second
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_the_same_delivery_at_once_send_it_once(catalog, receiver):
    school = SchoolFactory()
    receiver.script("/slow", default=Reply(delay_seconds=0.5))
    delivery, _ = _delivery_to(school, receiver.url("/slow"))
    results = []
    start = threading.Barrier(4)

    def attempt():
        start.wait()
        try:
            results.append(delivery_attempt(delivery_id=delivery.id))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(receiver.received("/slow")) == 1
    assert len([result for result in results if result is not None]) == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1
