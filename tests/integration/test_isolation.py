"""One webhook's slow or dead receiver never holds up another's, with a real worker process:
its attempts hold neither the worker's task slots nor more than its concurrency."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from celery import current_app
from django.db import transaction

from common.clock import db_now
from deliveries.models import Delivery, DeliveryStatus, EndpointState, FanOutRequest
from deliveries.services.fan_out import events_fan_out_waiting, fan_out_request_take
from events.services import event_publish
from tests.broker import Queue, sending_to
from tests.processes import ManagedProcess, start_worker
from tests.receiver import Receiver, Reply
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


def _publish(school, count: int, first: int = 0, event_type: str = "course.created") -> float:
    """``count`` events at once (one transaction); return when they were committed."""
    with transaction.atomic():
        for number in range(first, first + count):
            event_publish(school=school, type=event_type, data={"course": {"id": f"c-{number}"}})
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


@pytest.fixture
def few_threads_worker(process_logs) -> Iterator[ManagedProcess]:
    """A worker of its own whose processes have 8 send threads each, of which attempts to
    failing receivers may hold 4, and whose attempts give up after 8 s."""
    queue = f"webhooks-failing-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        process_logs,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        WEBHOOKS_TIMEOUT_SECONDS=str(HANG_TIMEOUT_SECONDS),
        WEBHOOKS_SEND_THREADS="8",
        WEBHOOKS_FAILING_CONCURRENCY="4",
    )
    try:
        with sending_to(queue):
            yield worker
    finally:
        worker.stop()


def test_failing_receivers_leave_the_healthy_ones_send_threads(
    few_threads_worker, catalog, receiver
):
    """Four webhooks whose receivers failed before hang now: at their concurrency their retries
    would take 32 attempts at once, more than the worker's 16 send threads, and a healthy
    receiver's deliveries would wait for a thread until the hanging attempts ended. Failing
    receivers get their share, 4 threads of each process, and the healthy one the rest."""
    school = SchoolFactory()
    for path in ("/a", "/b", "/c", "/d"):
        receiver.script(path, default=Reply(delay_seconds=HANG_TIMEOUT_SECONDS + 2))
        failing = SubscriptionFactory(school=school, url=receiver.url(path), topics=["*"])
        EndpointState.objects.create(subscription=failing, consecutive_failures=1)
    receiver.script("/fast", default=Reply(status=200))
    SubscriptionFactory(school=school, url=receiver.url("/fast"), topics=["*"])

    _publish(school, 10)
    receiver.wait_for(10, path="/fast", timeout=HANG_TIMEOUT_SECONDS)
    hung_from = min(r.at for r in receiver.received() if r.path != "/fast")
    second_wave = _publish(school, 10, first=10)
    fast = receiver.wait_for(20, path="/fast", timeout=HANG_TIMEOUT_SECONDS)

    assert max(request.at for request in fast) < hung_from + HANG_TIMEOUT_SECONDS
    assert second_wave < hung_from + HANG_TIMEOUT_SECONDS
    # At most 4 in each of the worker's 2 processes (their share), before any ended.
    hanging = [r for r in receiver.received() if r.path != "/fast"]
    assert 4 <= len(hanging) <= 8


@pytest.fixture
def one_process_few_threads_worker(process_logs) -> Iterator[ManagedProcess]:
    """A worker of one process with 8 send threads, of which attempts to failing receivers may
    hold 4; a receiver host 1 s silent counts as failing; attempts give up after 8 s."""
    queue = f"webhooks-silent-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        process_logs,
        concurrency=1,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        WEBHOOKS_TIMEOUT_SECONDS=str(HANG_TIMEOUT_SECONDS),
        WEBHOOKS_SEND_THREADS="8",
        WEBHOOKS_FAILING_CONCURRENCY="4",
        WEBHOOKS_SILENT_HOST_SECONDS="1",
    )
    try:
        with sending_to(queue):
            yield worker
    finally:
        worker.stop()


def test_a_receiver_host_gone_silent_leaves_the_healthy_ones_send_threads(
    one_process_few_threads_worker, catalog, receiver
):
    """A receiver host goes down: nothing it was sent has failed yet (its first requests hang
    until their 8 s deadline), so its webhooks look healthy. Once it has been silent for 1 s
    with requests in flight, its webhooks not tried yet count as failing: the six more at its
    door get what is left of the failing receivers' share (4 threads, 2 taken by the first
    requests), and another host's receiver still gets the other 4 threads at once. Without
    that, the six would take every free thread and the healthy receiver would wait for the
    first deadlines."""
    school = SchoolFactory()
    healthy = Receiver().start()
    try:
        healthy.script("/fast", default=Reply(status=200))
        SubscriptionFactory(school=school, url=healthy.url("/fast"), topics=["course.updated"])
        receiver.script("/first", default=Reply(delay_seconds=HANG_TIMEOUT_SECONDS + 2))
        SubscriptionFactory(
            school=school, url=receiver.url("/first"), topics=["course.created"], max_concurrency=2
        )
        for number in range(6):
            path = f"/next-{number}"
            receiver.script(path, default=Reply(delay_seconds=HANG_TIMEOUT_SECONDS + 2))
            SubscriptionFactory(school=school, url=receiver.url(path), topics=["course.deleted"])

        _publish(school, 2, event_type="course.created")
        receiver.wait_for(2, path="/first", timeout=HANG_TIMEOUT_SECONDS)
        hung_from = min(request.at for request in receiver.received("/first"))
        time.sleep(1.5)  # silent for more than 1 s
        _publish(school, 1, event_type="course.deleted")  # one for each of the six
        time.sleep(0.5)
        second_wave = _publish(school, 10, event_type="course.updated")
        fast = healthy.wait_for(10, path="/fast", timeout=HANG_TIMEOUT_SECONDS)
        hanging = [r for r in receiver.received() if r.path.startswith("/next")]
    finally:
        healthy.stop()

    assert max(request.at for request in fast) < hung_from + HANG_TIMEOUT_SECONDS
    assert second_wave < hung_from + HANG_TIMEOUT_SECONDS
    assert len(hanging) == 2  # the rest of the share; the other four wait


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


def test_another_schools_event_goes_before_a_large_fan_outs_waiting_messages(
    process_logs, catalog, receiver, settings
):
    """One school's event for many webhooks leaves its delivery messages in the queue; an event
    another school publishes after them is fanned out and sent first, not after all of them."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 10
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2
    large, small = SchoolFactory(), SchoolFactory()
    receiver.script("/large", default=Reply(status=200))
    receiver.script("/small", default=Reply(status=200))
    for _ in range(40):
        SubscriptionFactory(school=large, url=receiver.url("/large"), topics=["*"])
    SubscriptionFactory(school=small, url=receiver.url("/small"), topics=["*"])
    queue = Queue("bulk")
    worker = None
    try:
        with sending_to(queue.name):  # no worker reads it yet
            # The large school's event is fanned out here, while no worker runs (a request
            # marked pending keeps its publish from sending one): 20 messages of 2 wait.
            now_ms = int(db_now().timestamp() * 1000)
            FanOutRequest.objects.update_or_create(pk=1, defaults={"requested_at_ms": now_ms})
            event_publish(school=large, type="course.created", data={"course": {"id": "all"}})
            fan_out_request_take()
            assert events_fan_out_waiting() == 1
            # Then the small school publishes: its request to fan out is queued after them.
            event_publish(school=small, type="course.created", data={"course": {"id": "one"}})
        # One process, which takes one message at a time: the order it takes them in shows.
        worker = start_worker(process_logs, concurrency=1, CELERY_TASK_DEFAULT_QUEUE=queue.name)
        receiver.wait_for(40, path="/large", timeout=30)
        small_at = receiver.wait_for(1, path="/small", timeout=5)[0].at
    finally:
        if worker is not None:
            worker.stop()
        queue.delete()
    before = [request for request in receiver.received("/large") if request.at < small_at]
    assert len(before) <= 4  # in the order they were sent, it came after all 40
