"""A webhook's limits and take-up when claims, results and Send Tests race."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from deliveries.models import CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.services import deliveries_attempt
from deliveries.services import testing as testing_module
from deliveries.services.claim import (
    deliveries_claim,
    deliveries_claim_waiting,
    endpoints_lock,
)
from deliveries.services.dispatch import Dispatcher, _Result
from deliveries.services.record import CircuitChanges, deliveries_record
from deliveries.services.testing import delivery_test_send
from tests.deliveries.factories import deliveries_published
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import TransportResult

_REFUSED = TransportResult(request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="x")
_ANSWERED = TransportResult(request_headers={}, status=200)


@pytest.fixture
def engine():
    dispatcher = Dispatcher(slots=4)
    yield dispatcher
    dispatcher.stop(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_an_answer_that_closes_the_circuit_takes_up_what_waited_even_if_nothing_waited_at_its_claim(
    school, receiver, settings, engine
):
    """Any answer closes the circuit, including one to an attempt sent before it opened, and
    what waited behind the open circuit is then taken up by the recorder, not left to the
    sweeper. Three attempts go while the circuit is closed, with slots to spare and nothing
    waiting (none is marked ``waiting_behind``); two are refused and open the circuit; a new
    delivery waits behind it; the third answers and closes it."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 30
    receiver.script("/hook", default=Reply(status=200))
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/hook"), topics=["*"], max_concurrency=10
    )
    ids = deliveries_published(school, 3)
    claims = deliveries_claim(delivery_ids=ids).claims
    assert len(claims) == 3
    assert not any(claim.waiting_behind for claim in claims)  # slots to spare, nothing waits

    circuits = CircuitChanges()
    deliveries_record(
        claims=claims[:2], results=[_REFUSED] * 2, pull_waiting=False, circuits=circuits
    )
    assert EndpointState.objects.get(pk=webhook.pk).circuit_state == CircuitState.OPEN

    later = deliveries_published(school, 1, start=3)
    parked = deliveries_claim(delivery_ids=later)
    assert parked.claims == []
    assert parked.waiting == later  # behind the open circuit

    # The third attempt (sent before the circuit opened) answers: the recorder closes the
    # circuit and should hand its slots to what waited behind it.
    with engine._lock:
        engine._in_flight += 1
    continued = engine._record([_Result(claims[2], _ANSWERED)])
    engine._done(1 - continued)

    assert EndpointState.objects.get(pk=webhook.pk).circuit_state == CircuitState.CLOSED
    assert engine.drain(timeout=10)
    assert continued == 1  # the closing answer's slot went to the delivery that waited
    assert Delivery.objects.get(pk=later[0]).status == DeliveryStatus.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_a_claim_that_waited_for_the_webhooks_lock_does_not_turn_its_rate_bucket_back(school):
    """A claim reads its clock before it waits for the webhook's lock. Another claim that held
    the lock meanwhile counted the bucket at a later time; the claim that waited must not set
    the bucket's time back to its own, or the time between is counted twice and the next claim
    spends tokens already spent. Here (1/s) the bucket is empty at t0; a claim holding the lock
    until t0+1.5 s takes the one token; the claim that waited takes none; one right after
    must find none either."""
    webhook = SubscriptionFactory(
        school=school,
        url="http://127.0.0.1:9/hook",
        topics=["*"],
        max_concurrency=10,
        rate_limit_per_second=1,
    )
    ids = deliveries_published(school, 6)
    EndpointState.objects.create(
        subscription=webhook, rate_tokens=0.0, rate_tokens_at=timezone.now()
    )  # the bucket was just emptied
    locked = threading.Event()
    other: list = []

    def claim_holding_the_lock():
        try:
            with transaction.atomic():
                endpoints_lock([webhook.pk])  # e.g. a claim or a recorder busy with this webhook
                locked.set()
                threading.Event().wait(1.5)
                other.extend(deliveries_claim(delivery_ids=ids[:3]).claims)
        finally:
            connection.close()

    thread = threading.Thread(target=claim_holding_the_lock)
    thread.start()
    assert locked.wait(10)
    waited = deliveries_claim(delivery_ids=ids[3:4])  # its clock read before the wait
    thread.join(10)
    after = deliveries_claim(delivery_ids=ids[4:])  # just after: the bucket is empty

    assert len(other) == 1  # the bucket holds one token at 1/s
    assert waited.claims == []
    state = EndpointState.objects.get(pk=webhook.pk)
    assert after.claims == [], (
        f"{len(after.claims)} more went at once: bucket time {state.rate_tokens_at} went back"
    )


def test_another_workers_take_up_does_not_steal_a_send_test(school, receiver, monkeypatch):
    """Send Test writes its test delivery (no message: it is sent by the request that made
    it) and commits, then claims it. Another worker whose attempt to the same webhook finishes
    in between takes up that webhook's waiting deliveries: not the Send Test, which the page
    sends and shows."""
    receiver.script("/ok", default=Reply(status=200))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/ok"), topics=["*"])
    real_attempt = testing_module.deliveries_attempt
    taken_up: list = []

    def another_worker_takes_up_first(*, delivery_ids):
        taken_up.extend(deliveries_claim_waiting(freed={webhook.pk: 1}).claims)
        return real_attempt(delivery_ids=delivery_ids)

    monkeypatch.setattr(testing_module, "deliveries_attempt", another_worker_takes_up_first)

    attempt = delivery_test_send(subscription=webhook, event_type="course.created")

    assert attempt.response_status == 200
    assert [claim.delivery.is_test for claim in taken_up] == []


def test_recording_hands_each_webhook_its_own_freed_slots(
    school, receiver, django_capture_on_commit_callbacks
):
    """``deliveries_record(pull_waiting=True)`` (``deliveries_attempt``) gives each webhook
    as many of its own waiting deliveries a message as its attempts finished: another
    webhook's older backlog does not take its slot."""
    receiver.script("/busy", default=Reply(status=200))
    receiver.script("/quiet", default=Reply(status=200))
    SubscriptionFactory(school=school, url=receiver.url("/busy"), topics=["*"], max_concurrency=1)
    ids = deliveries_published(school, 3)  # the busy webhook's, published first: they wait longer
    quiet = SubscriptionFactory(
        school=school, url=receiver.url("/quiet"), topics=["*"], max_concurrency=1
    )
    ids += deliveries_published(school, 2, start=3)  # to both webhooks

    with django_capture_on_commit_callbacks():
        deliveries_attempt(delivery_ids=ids)  # one each goes; the rest wait

    assert len(receiver.received("/quiet")) == 1
    [waiting] = Delivery.objects.filter(subscription=quiet, status=DeliveryStatus.PENDING)
    assert waiting.enqueued_at is not None  # its webhook's finished attempt gave it a message


@pytest.mark.django_db(transaction=True)
def test_a_replay_being_built_does_not_hold_the_recorder(school, monkeypatch):
    """A replay of thousands of events renders their bodies inside its transaction. The
    recorder writes every school's results in one statement per batch, which starts or ends
    failure streaks on the webhooks' rows: a replay holding its webhook's row would hold that
    whole batch until the replay committed."""
    from deliveries.services import replay as replay_module

    webhook = SubscriptionFactory(school=school, topics=["*"])
    ids = deliveries_published(school, 2)
    claims = deliveries_claim(delivery_ids=ids[:1]).claims
    building, release = threading.Event(), threading.Event()
    build = replay_module.delivery_build

    def slow_build(**kwargs):
        building.set()
        release.wait(10)
        return build(**kwargs)

    monkeypatch.setattr(replay_module, "delivery_build", slow_build)

    def replay() -> None:
        try:
            replay_module.deliveries_replay(
                plan=replay_module.replay_plan(subscription=webhook), actor=None
            )
        finally:
            connection.close()

    thread = threading.Thread(target=replay)
    thread.start()
    try:
        assert building.wait(10)
        # While the replay builds its deliveries, a failed attempt starts the webhook's streak
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            deliveries_record(claims=claims, results=[_REFUSED], pull_waiting=False)
    finally:
        release.set()
        thread.join()

    webhook.refresh_from_db()
    assert webhook.failing_since is not None
    assert Delivery.objects.filter(subscription=webhook, replay_number=1).count() == 2
