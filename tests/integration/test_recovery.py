"""Lost work is re-driven by the beat sweeper: a worker killed mid-attempt, a lost message."""

import time
import uuid

import pytest
from django.conf import settings
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from events.models import Event
from tests.processes import start_beat, start_worker
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def recovery_env():
    """Processes on a queue of their own, with a short lease and a fast sweeper."""
    return {
        "CELERY_TASK_DEFAULT_QUEUE": f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{uuid.uuid4().hex[:6]}",
        "WEBHOOKS_LEASE_SECONDS": "3",
        "WEBHOOKS_SWEEP_INTERVAL_SECONDS": "1",
        "WEBHOOKS_REDRIVE_AFTER_SECONDS": "2",
    }


def _wait(predicate, timeout=30.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {message}")


def test_a_worker_killed_mid_attempt_loses_nothing(catalog, receiver, process_logs, recovery_env):
    school = SchoolFactory()
    subscription = SubscriptionFactory(school=school, url=receiver.url("/crash"), topics=["*"])
    receiver.script("/crash", Reply(delay_seconds=30), default=Reply(status=200))
    now = timezone.now()
    # A delivery with no task message yet: only the sweeper (run by beat) can start it.
    event = Event.objects.create(
        school=school, type_id="course.created", data={}, occurred_at=now, fanned_out_at=now
    )
    delivery = Delivery.objects.create(
        school=school,
        event=event,
        subscription=subscription,
        event_type="course.created",
        body=b'{"hello":"world"}',
        content_type="application/json",
        next_attempt_at=now,
    )
    beat = start_beat(process_logs, **recovery_env)
    workers = [start_worker(process_logs, **recovery_env)]
    try:
        receiver.wait_for(1, path="/crash")
        workers[0].kill()  # SIGKILL while the request is in flight: no result is written
        assert Delivery.objects.get(pk=delivery.pk).leased_until is not None

        workers.append(start_worker(process_logs, **recovery_env))
        _wait(
            lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED,
            message="the delivery to be re-driven after the lease expired",
        )
    finally:
        for worker in workers:
            worker.stop()
        beat.stop()

    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.error_kind) for a in attempts] == [
        (1, ErrorKind.INTERRUPTED),
        (2, ErrorKind.NONE),
    ]
    requests = receiver.received("/crash")
    assert [r.headers["x-webhook-attempt"] for r in requests] == ["1", "2"]
    assert {r.headers["webhook-id"] for r in requests} == {f"msg_{delivery.id.hex}"}


def test_an_event_whose_fan_out_message_was_lost_is_delivered_by_the_sweeper(
    catalog, receiver, process_logs, recovery_env
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/late"), topics=["*"])
    # Stored as event_publish stores it, but its hand-off message never reached the broker.
    event = Event.objects.create(
        school=school,
        type_id="student.created",
        data={"student": {"id": "s1"}},
        occurred_at=timezone.now(),
    )
    beat = start_beat(process_logs, **recovery_env)
    worker = start_worker(process_logs, **recovery_env)
    try:
        [request] = receiver.wait_for(1, path="/late", timeout=30)
    finally:
        worker.stop()
        beat.stop()

    assert request.headers["x-webhook-event"] == "student.created"
    assert Event.objects.get(pk=event.pk).fanned_out_at is not None
    assert Delivery.objects.get(event=event).status == DeliveryStatus.DELIVERED
