"""End to end: publish in this process, deliver from a real Celery worker process over Redis."""

import time

import pytest
from celery import current_app
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import DELIVER_TASK
from events.models import Event
from events.services import event_publish
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait_until_final(deliveries, timeout=20.0, *, count=1):
    """Wait until the queryset has at least ``count`` deliveries (events fanned out apart make
    their rows at different times) and every one is delivered or failed; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(deliveries.all())
        if len(rows) >= count and all(row.status != DeliveryStatus.PENDING for row in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"Deliveries still pending: {[(d.id, d.status) for d in deliveries]}")


def _publish(school, type="course.created", **kwargs):
    kwargs.setdefault("data", {"course": {"id": "c-1", "name": "Maths"}})
    with transaction.atomic():
        return event_publish(school=school, type=type, **kwargs)


def test_an_event_reaches_exactly_the_matching_subscriptions_signed(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    exact = SubscriptionFactory(
        school=school, url=receiver.url("/exact"), topics=["course.created"]
    )
    wildcard = SubscriptionFactory(school=school, url=receiver.url("/wild"), topics=["course.*"])
    everything = SubscriptionFactory(school=school, url=receiver.url("/all"), topics=["*"])
    SubscriptionFactory(school=school, url=receiver.url("/students"), topics=["student.*"])
    SubscriptionFactory(school=SchoolFactory(), url=receiver.url("/other-school"), topics=["*"])

    event = _publish(school)

    rows = _wait_until_final(Delivery.objects.filter(event=event))
    assert {row.status for row in rows} == {DeliveryStatus.DELIVERED}
    assert sorted(r.path for r in receiver.received()) == ["/all", "/exact", "/wild"]
    for path, subscription in (("/exact", exact), ("/wild", wildcard), ("/all", everything)):
        [request] = receiver.received(path)
        payload = Webhook(subscription.secret).verify(request.body, request.headers)
        assert payload["id"] == str(event.id)
        assert payload["type"] == "course.created"
        assert payload["data"] == {"course": {"id": "c-1", "name": "Maths"}}
    assert Delivery.objects.count() == 3


def test_a_receiver_that_fails_twice_then_succeeds_gets_three_attempts_with_one_id(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/flaky"), topics=["*"])
    receiver.script("/flaky", Reply(status=500), Reply(status=503), Reply(status=200))

    event = _publish(school)

    [delivery] = _wait_until_final(Delivery.objects.filter(event=event))
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [a.response_status for a in attempts] == [500, 503, 200]
    assert [a.error_kind for a in attempts] == [ErrorKind.HTTP_STATUS, ErrorKind.HTTP_STATUS, ""]
    requests = receiver.received("/flaky")
    assert {r.headers["webhook-id"] for r in requests} == {f"msg_{delivery.id.hex}"}
    assert [r.headers["x-webhook-attempt"] for r in requests] == ["1", "2", "3"]
    assert len({r.body for r in requests}) == 1  # the same bytes every time


def test_a_receiver_that_always_fails_gets_the_whole_schedule_then_the_delivery_fails(
    worker_process, catalog, receiver, settings
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/down"), topics=["*"])
    receiver.script("/down", default=Reply(status=500, body=b"down"))

    event = _publish(school)

    [delivery] = _wait_until_final(Delivery.objects.filter(event=event))
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == settings.WEBHOOKS_RETRY_MAX_ATTEMPTS == 5
    assert delivery.last_error == "The receiver answered 500 Reply."
    arrivals = [request.at for request in receiver.received("/down")]
    assert len(arrivals) == 5
    # Shrunk schedule 0, 0.2, 0.6, 1.4, 3.0 s after the first: no attempt comes early.
    created = delivery.created_at.timestamp()
    for arrival, offset in zip(arrivals, [0, 0.2, 0.6, 1.4, 3.0], strict=True):
        assert arrival >= created + offset - 0.05


def _first_attempts(event, count, timeout=20.0):
    """Wait for the first attempts of ``count`` deliveries; map subscription id -> attempt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempts = DeliveryAttempt.objects.filter(delivery__event=event, number=1).select_related(
            "delivery"
        )
        if len(attempts) >= count:
            return {attempt.delivery.subscription_id: attempt for attempt in attempts}
        time.sleep(0.05)
    raise AssertionError(f"Fewer than {count} first attempts for event {event.id}")


def test_timeout_refused_and_redirect_are_each_recorded_as_such(
    worker_process, catalog, receiver, settings
):
    school = SchoolFactory()
    slow = SubscriptionFactory(school=school, url=receiver.url("/slow"), topics=["*"])
    refused = SubscriptionFactory(school=school, url="http://127.0.0.1:9/hook", topics=["*"])
    moved = SubscriptionFactory(school=school, url=receiver.url("/moved"), topics=["*"])
    # The test run's attempt deadline is 2 s; this receiver answers after 4 s.
    assert settings.WEBHOOKS_TIMEOUT_SECONDS == 2
    receiver.script("/slow", default=Reply(delay_seconds=4))
    receiver.script("/moved", default=Reply(status=302, headers={"Location": "https://x.example/"}))

    event = _publish(school)

    attempts = _first_attempts(event, 3)
    assert attempts[slow.id].error_kind == ErrorKind.TIMEOUT
    assert attempts[slow.id].response_status is None
    assert attempts[refused.id].error_kind == ErrorKind.CONNECTION
    assert attempts[refused.id].error_message == (
        "The connection was refused: nothing listens at that address."
    )
    assert attempts[moved.id].error_kind == ErrorKind.REDIRECT
    assert attempts[moved.id].response_status == 302
    assert {r.path for r in receiver.received()} == {"/slow", "/moved"}  # no redirect followed


def test_the_same_delivery_enqueued_several_times_at_once_is_sent_once(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/once"), topics=["*"])
    receiver.script("/once", default=Reply(delay_seconds=0.5))

    event = _publish(school)
    deadline = time.monotonic() + 10
    while not Delivery.objects.filter(event=event).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    delivery = Delivery.objects.get(event=event)
    for _ in range(3):
        current_app.send_task(DELIVER_TASK, args=[[str(delivery.id)]])

    _wait_until_final(Delivery.objects.filter(event=event))
    time.sleep(1.0)  # let every duplicate message be consumed
    assert len(receiver.received("/once")) == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_an_event_published_in_a_rolled_back_transaction_sends_nothing(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"])

    def publish_then_fail():
        with transaction.atomic():
            event_publish(school=school, type="course.deleted", data={"course": {"id": "gone"}})
            raise RuntimeError("the rest of the request failed")

    with pytest.raises(RuntimeError):
        publish_then_fail()

    # A later event is the barrier: once it has arrived, the rolled-back one would have too.
    barrier = _publish(school, type="course.created")
    _wait_until_final(Delivery.objects.filter(event=barrier))
    assert [r.headers["x-webhook-event"] for r in receiver.received()] == ["course.created"]
    assert Event.objects.filter(type="course.deleted").count() == 0


def test_an_idempotency_key_reused_returns_the_first_event_and_delivers_once(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"])

    first = _publish(school, idempotency_key="enrolment-42")
    again = _publish(school, idempotency_key="enrolment-42")

    assert again.id == first.id
    barrier = _publish(school, type="course.updated")
    _wait_until_final(Delivery.objects.filter(event__in=[first, barrier]), count=2)
    events = [r.headers["x-webhook-event"] for r in receiver.received()]
    assert sorted(events) == ["course.created", "course.updated"]
