"""One webhook's slow or dead receiver never holds up another's, with a real worker process:
its attempts hold neither the worker's task slots nor more than its concurrency."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from celery import current_app
from django.db import transaction

from deliveries.models import Delivery, DeliveryStatus
from events.services import event_publish
from tests.processes import ManagedProcess, start_worker
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Long enough that "before the hanging attempts ended" cannot be met by luck.
HANG_TIMEOUT_SECONDS = 8.0


@pytest.fixture
def patient_worker(process_logs, settings) -> Iterator[ManagedProcess]:
    """A worker of its own (on a queue of its own) whose attempts give up after 8 s."""
    queue = f"webhooks-isolation-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        process_logs,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        WEBHOOKS_TIMEOUT_SECONDS=str(HANG_TIMEOUT_SECONDS),
    )
    previous = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = queue
    try:
        yield worker
    finally:
        current_app.conf.task_default_queue = previous
        worker.stop()


def _publish(school, count: int, first: int = 0) -> float:
    """``count`` events at once (one transaction); return when they were committed."""
    with transaction.atomic():
        for number in range(first, first + count):
            event_publish(
                school=school, type="course.created", data={"course": {"id": f"c-{number}"}}
            )
    return time.time()


def test_a_hanging_receiver_does_not_delay_a_healthy_one(patient_worker, catalog, receiver):
    school = SchoolFactory()
    receiver.script("/hang-a", default=Reply(delay_seconds=HANG_TIMEOUT_SECONDS + 2))
    receiver.script("/hang-b", default=Reply(delay_seconds=HANG_TIMEOUT_SECONDS + 2))
    receiver.script("/fast", default=Reply(status=200))
    for path in ("/hang-a", "/hang-b", "/fast"):
        SubscriptionFactory(school=school, url=receiver.url(path), topics=["*"])

    _publish(school, 10)
    receiver.wait_for(10, path="/fast", timeout=HANG_TIMEOUT_SECONDS)
    hung_from = min(r.at for r in receiver.received() if r.path.startswith("/hang"))
    # A second wave while both hanging receivers hold their attempts (and their deliveries'
    # slots): the healthy webhook's deliveries still go at once.
    second_wave = _publish(school, 10, first=10)
    fast = receiver.wait_for(20, path="/fast", timeout=HANG_TIMEOUT_SECONDS)

    last_fast = max(request.at for request in fast)
    assert last_fast < hung_from + HANG_TIMEOUT_SECONDS  # before any hanging attempt ended
    assert second_wave < hung_from + HANG_TIMEOUT_SECONDS
    hanging_sent = [r for r in receiver.received() if r.path.startswith("/hang")]
    assert len(hanging_sent) == 16  # 8 each, the default concurrency; the rest wait their turn
    waiting = Delivery.objects.filter(
        subscription__url__contains="/hang",
        status=DeliveryStatus.PENDING,
        enqueued_at=None,
        leased_until=None,
    )
    assert waiting.count() == 40 - 16


def test_a_webhook_never_has_more_requests_in_flight_than_its_limit(
    worker_process, catalog, receiver
):
    school = SchoolFactory()
    receiver.script("/slow", default=Reply(status=200, delay_seconds=0.4))
    SubscriptionFactory(school=school, url=receiver.url("/slow"), topics=["*"], max_concurrency=2)

    _publish(school, 8)
    arrivals = sorted(request.at for request in receiver.wait_for(8, path="/slow", timeout=30))

    # Each request is answered 0.4 s after it arrives: count how many overlap at each arrival.
    overlaps = [sum(1 for other in arrivals if other <= at < other + 0.4) for at in arrivals]
    assert max(overlaps) == 2
    deliveries = Delivery.objects.filter(subscription__school=school)
    deadline = time.monotonic() + 10
    while deliveries.exclude(status=DeliveryStatus.DELIVERED).exists():
        assert time.monotonic() < deadline, "deliveries not recorded"
        time.sleep(0.1)
    assert deliveries.count() == 8
