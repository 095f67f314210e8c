"""A worker process's sending engine: tasks hand over and return, the recorder writes results,
and the leases of deliveries in flight are renewed."""

import datetime as dt
import json
import os
import time
import uuid

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common.clock import db_now
from deliveries.models import CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.services import claim as claim_module
from deliveries.services import dispatch as dispatch_module
from deliveries.services import event_fan_out, record, subscription_pause, subscription_resume
from deliveries.services import fan_out as fan_out_module
from deliveries.services.claim import deliveries_claim
from deliveries.services.dispatch import Dispatcher, _Result
from deliveries.services.fan_out import events_fan_out_waiting
from events.services import event_publish
from subscriptions.models import Subscription
from tests.database import connection_lose
from tests.deliveries.factories import deliveries_published
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.destinations import receiver_host
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import TransportResult

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_leases(settings):
    settings.WEBHOOKS_LEASE_SECONDS = 0.6  # renewed every 0.2 s


@pytest.fixture
def engine():
    dispatcher = Dispatcher(slots=4)
    yield dispatcher
    dispatcher.stop(timeout=10)


def _delivery(school, url):
    SubscriptionFactory(school=school, url=url, topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    return str(delivery_id)


def test_dispatch_returns_before_the_answer_and_the_recorder_writes_it(school, receiver, engine):
    receiver.script("/slow", Reply(status=200, delay_seconds=1.0))
    delivery_id = _delivery(school, receiver.url("/slow"))
    started = time.monotonic()
    sent = engine.dispatch([delivery_id])
    returned_after = time.monotonic() - started
    assert engine.drain(timeout=10)

    assert sent == 1
    assert returned_after < 0.9  # it did not wait for the receiver's answer
    delivery = Delivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.leased_until) == (
        DeliveryStatus.DELIVERED,
        1,
        None,
    )


def test_the_leases_of_deliveries_in_flight_are_renewed(school, receiver, short_leases, engine):
    receiver.script("/slow", Reply(status=200, delay_seconds=1.5))
    delivery_id = _delivery(school, receiver.url("/slow"))
    engine.dispatch([delivery_id])
    time.sleep(1.0)  # past the first lease
    still_held = Delivery.objects.get(pk=delivery_id).leased_until
    assert engine.drain(timeout=10)

    assert still_held is not None
    # Claimed 1 s ago with a 0.6 s lease: it holds only because it was renewed.
    assert still_held > timezone.now() - dt.timedelta(seconds=0.2)
    assert len(receiver.received("/slow")) == 1
    assert Delivery.objects.get(pk=delivery_id).status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("stage", ["request_build", "request_send"])
def test_a_delivery_an_unexpected_error_stopped_is_recorded_as_such_and_retried(
    school, short_leases, engine, monkeypatch, stage
):
    """An unexpected error while building or sending a request (a defect: every expected
    failure is a result) is recorded as an internal failure and the delivery retried on its
    schedule, not left to its lease: that would log an "interrupted" attempt 10 s later, as if
    a worker had died with the request in flight."""

    def broken(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(dispatch_module, stage, broken)
    delivery_id = _delivery(school, "http://127.0.0.1:9/hook")

    assert engine.dispatch([delivery_id]) == 1
    assert engine.drain(timeout=5)

    delivery = Delivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.leased_until) == (
        DeliveryStatus.PENDING,
        1,
        None,
    )
    assert delivery.next_attempt_at > timezone.now()
    [attempt] = delivery.attempt_log.all()
    assert attempt.error_kind == ErrorKind.INTERNAL
    assert attempt.error_message == "Unexpected error: RuntimeError: unexpected"


def test_what_was_claimed_is_sent_even_if_the_claims_follow_up_fails(
    school, receiver, engine, monkeypatch
):
    """The broker gone just after a claim committed: the follow-up (messages for what the
    claim left) fails, and the task with it, but the claimed delivery is still sent and
    recorded instead of waiting for its lease to run out."""
    receiver.script("/hook", default=Reply(status=200))
    delivery_id = _delivery(school, receiver.url("/hook"))

    def broker_gone(ids, outcome):
        raise ConnectionError("the broker is unreachable")

    monkeypatch.setattr(dispatch_module, "claims_followup", broker_gone)

    with pytest.raises(ConnectionError):
        engine.dispatch([delivery_id])
    assert engine.drain(timeout=10)

    assert len(receiver.received("/hook")) == 1
    delivery = Delivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert list(delivery.attempt_log.values_list("number", "error_kind")) == [(1, "")]


def test_after_a_probe_answers_the_backlog_goes_at_the_webhooks_concurrency(
    school, receiver, engine
):
    """The circuit closes on the probe's answer; the deliveries that waited behind it then use
    every slot of the webhook (3), not one at a time behind the probe's."""
    receiver.script("/hook", default=Reply(status=200, delay_seconds=0.4))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"), max_concurrency=3)
    ids = []
    for number in range(7):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
    due = timezone.now() - dt.timedelta(minutes=10)
    for number, delivery_id in enumerate(ids):  # waiting behind the open circuit, in order
        Delivery.objects.filter(pk=delivery_id).update(
            enqueued_at=None, next_attempt_at=due + dt.timedelta(seconds=number)
        )
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=due,
        consecutive_failures=5,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    assert engine.dispatch(ids[:1]) == 1  # the probe
    receiver.wait_for(7, path="/hook", timeout=20)
    assert engine.drain(timeout=10)

    arrivals = sorted(request.at for request in receiver.received("/hook"))
    overlapping = max(sum(1 for other in arrivals if other <= at < other + 0.4) for at in arrivals)
    assert overlapping == 3  # after the probe, three at a time, never more
    assert engine._slots_take_now(engine.slots + 1) == engine.slots  # every slot given back
    assert EndpointState.objects.get(pk=webhook.pk).circuit_state == CircuitState.CLOSED
    assert Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.DELIVERED).count() == 7


def test_the_slot_of_an_attempt_nobody_waited_behind_goes_to_what_waits_when_it_ends(
    school, receiver, engine, settings
):
    """A claim that left nothing waiting and did not take the last slot has nobody waiting
    behind it; claims after it fill the webhook and leave deliveries waiting for their own
    attempts. When its attempt ends first, the deliveries that wait take its slot at once,
    rather than leaving it free until the others' attempts end (or, with nothing more
    published, until the backlog is gone)."""
    settings.WEBHOOKS_TIMEOUT_SECONDS = 5  # every answer below comes in time
    receiver.script(
        "/hook",
        # The first, alone: long enough for the set-up below to publish and claim behind it
        # on a busy machine (the suite runs in two processes on two cores).
        Reply(status=200, delay_seconds=1.0),
        Reply(status=200, delay_seconds=3.0),  # the two that fill the webhook
        Reply(status=200, delay_seconds=3.0),
        default=Reply(status=200, delay_seconds=0.3),
    )
    SubscriptionFactory(school=school, url=receiver.url("/hook"), max_concurrency=3)
    ids = deliveries_published(school, 1)
    assert engine.dispatch(ids) == 1  # nothing waits, a slot is free: nobody behind it
    receiver.wait_for(1, path="/hook", timeout=10)
    ids += deliveries_published(school, 8, start=1)
    Delivery.objects.filter(pk__in=ids[1:]).update(enqueued_at=None)  # no messages
    assert engine.dispatch(ids[1:], waiting=True) == 2  # the last two slots; six wait
    receiver.wait_for(3, path="/hook", timeout=10)

    # The first answers 1 s after it came, the two 3 s after they came: the fourth comes
    # within 2 s of them, so it took the first's slot, not one of theirs.
    receiver.wait_for(4, path="/hook", timeout=2.0)
    receiver.wait_for(9, path="/hook", timeout=20)
    assert engine.drain(timeout=10)

    assert receiver.max_in_flight("/hook") == 3  # never more than its concurrency
    assert Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.DELIVERED).count() == 9
    assert engine._slots_take_now(engine.slots + 1) == engine.slots  # every slot given back


def test_after_a_catch_up_what_waited_behind_it_goes_at_the_webhooks_concurrency(
    school, receiver, engine
):
    """A resumed webhook sends what it held one at a time; the events published meanwhile
    wait behind them, then use every slot of the webhook (3), not one at a time."""
    receiver.script("/hook", default=Reply(status=200, delay_seconds=0.4))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"), max_concurrency=3)
    subscription_pause(subscription=webhook, actor=None)

    def publish(numbers):
        ids = []
        for number in numbers:
            event = event_publish(
                school=school, type="course.created", data={"course": {"id": f"c{number}"}}
            )
            ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
        return ids

    held = publish(range(2))
    subscription_resume(subscription=webhook, actor=None)
    later = publish(range(2, 8))
    Delivery.objects.filter(pk__in=held + later).update(enqueued_at=None)  # no messages

    engine.dispatch(held[:1])  # the catch-up's head (the resume's message)
    receiver.wait_for(8, path="/hook", timeout=20)
    assert engine.drain(timeout=10)

    requests = sorted(receiver.received("/hook"), key=lambda request: request.at)
    order = [json.loads(request.body)["data"]["course"]["id"] for request in requests]
    assert order[:2] == ["c0", "c1"]  # the held ones first, one at a time
    arrivals = [request.at for request in requests]
    overlapping = max(sum(1 for other in arrivals if other <= at < other + 0.4) for at in arrivals)
    assert overlapping == 3
    assert Subscription.objects.get(pk=webhook.pk).catching_up_since is None
    assert engine._slots_take_now(engine.slots + 1) == engine.slots


def test_what_a_take_up_claimed_is_sent_even_if_its_follow_up_fails(
    school, receiver, engine, monkeypatch
):
    """The take-up after an attempt leaves rate-limited deliveries a message for later; if
    that fails (the broker gone), what it claimed is still sent and every slot comes back."""
    receiver.script("/hook", default=Reply(status=200))
    SubscriptionFactory(school=school, url=receiver.url("/hook"), max_concurrency=1)
    ids = []
    for number in range(2):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
    Delivery.objects.filter(pk__in=ids).update(enqueued_at=None)
    real_take_up = dispatch_module.deliveries_claim_waiting

    def take_up_leaving_some_for_later(**kwargs):
        outcome = real_take_up(**kwargs)
        outcome.waiting = outcome.woken = ["left-for-later"]
        outcome.retry_at = timezone.now()
        return outcome

    real_follow_up = dispatch_module.claims_followup

    def broker_gone_for_the_take_up(ids, outcome):
        if ids == ["left-for-later"]:
            raise ConnectionError("the broker is unreachable")
        real_follow_up(ids, outcome)

    monkeypatch.setattr(dispatch_module, "deliveries_claim_waiting", take_up_leaving_some_for_later)
    monkeypatch.setattr(dispatch_module, "claims_followup", broker_gone_for_the_take_up)

    assert engine.dispatch(ids[:1]) == 1
    receiver.wait_for(2, path="/hook", timeout=10)
    assert engine.drain(timeout=10)

    delivered = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.DELIVERED)
    assert delivered.count() == 2
    assert engine._slots_take_now(engine.slots + 1) == engine.slots


@pytest.fixture
def leases_of_a_second(settings):
    settings.WEBHOOKS_LEASE_SECONDS = 1.2  # renewed every 0.4 s
    settings.WEBHOOKS_TIMEOUT_SECONDS = 6


def test_a_late_result_does_not_stop_the_lease_renewal_of_the_same_deliverys_new_attempt(
    school, receiver, leases_of_a_second, engine
):
    """A delivery's lease ran out mid-attempt and this same process claimed it again (the
    sweeper's message came here). When the first, late attempt is recorded, the second one is
    still in flight: its lease must go on being renewed, or it runs out too and the delivery
    goes a third time, with the webhook's slot counted free while its request is in flight."""
    receiver.script(
        "/hook", Reply(status=200, delay_seconds=0.3), Reply(status=200, delay_seconds=3.5)
    )
    delivery_id = _delivery(school, receiver.url("/hook"))
    assert engine.dispatch([delivery_id]) == 1
    receiver.wait_for(1, path="/hook", timeout=5)
    # Its lease runs out (the renewer could not reach the database for a while) ...
    Delivery.objects.filter(pk=delivery_id).update(
        leased_until=timezone.now() - dt.timedelta(seconds=1)
    )
    # ... and the sweeper's message for it reaches this process.
    assert engine.dispatch([delivery_id]) == 1
    receiver.wait_for(2, path="/hook", timeout=5)
    time.sleep(2.0)  # the first attempt is recorded (late); the second is still in flight

    leased_until = Delivery.objects.get(pk=delivery_id).leased_until
    assert leased_until is not None
    assert leased_until > timezone.now()  # still held: renewed
    assert engine.drain(timeout=10)
    assert Delivery.objects.get(pk=delivery_id).status == DeliveryStatus.DELIVERED


_REFUSED = TransportResult(request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="x")
_GONE = TransportResult(request_headers={}, status=410, error_kind=ErrorKind.HTTP_STATUS)


def test_a_410_from_a_webhook_deleted_mid_attempt_does_not_stop_the_batchs_410s_and_take_up(
    school, receiver, engine
):
    """One batch: a webhook deleted while its attempt was in flight answered 410, another
    webhook answered 410 too, and a third (concurrency 1) has a delivery waiting behind the
    attempt that just finished. The other 410 must still disable its webhook, and the waiting
    delivery must be taken up, not left to the sweeper."""
    receiver.script("/busy", default=Reply(status=200))
    deleted = SubscriptionFactory(school=school, url="http://127.0.0.1:9/deleted", topics=["*"])
    gone = SubscriptionFactory(school=school, url="http://127.0.0.1:9/gone", topics=["*"])
    busy = SubscriptionFactory(school=school, url=receiver.url("/busy"), max_concurrency=1)
    ids = deliveries_published(school, 2)
    by_webhook = {}
    for delivery in Delivery.objects.filter(pk__in=ids).order_by("created_at"):
        by_webhook.setdefault(delivery.subscription_id, []).append(str(delivery.pk))
    order = by_webhook[deleted.pk][:1] + by_webhook[gone.pk][:1] + by_webhook[busy.pk]
    outcome = deliveries_claim(delivery_ids=order)
    assert outcome.waiting == by_webhook[busy.pk][1:]  # behind the busy webhook's one slot
    claims = outcome.claims
    assert [c.delivery.subscription_id for c in claims] == [deleted.pk, gone.pk, busy.pk]
    Subscription.objects.filter(pk=deleted.pk).delete()  # while its attempt was in flight
    results = {
        deleted.pk: _GONE,
        gone.pk: _GONE,
        busy.pk: TransportResult(request_headers={}, status=200),
    }
    with engine._lock:
        engine._in_flight += len(claims)  # in flight here, as dispatch counts them
    batch = [_Result(claim, results[claim.delivery.subscription_id]) for claim in claims]

    continued = engine._record(batch)
    engine._done(len(batch) - continued)  # as the recorder thread does

    assert Subscription.objects.get(pk=gone.pk).is_active is False
    assert continued == 1  # the busy webhook's finished slot went to the one that waited
    receiver.wait_for(1, path="/busy", timeout=10)


def test_failures_are_counted_once_when_the_circuit_updates_commit_reply_is_lost(
    school, monkeypatch, settings, engine, caplog
):
    """The circuit's count commits, then the connection drops before the reply to the COMMIT
    arrives (a database restart at that moment). The recorder tries again: the two network
    failures of the batch must count once, not twice."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 5
    subscription = SubscriptionFactory(school=school, url="http://127.0.0.1:9/x", topics=["*"])
    claims = deliveries_claim(delivery_ids=deliveries_published(school, 2)).claims
    real = record.endpoints_lock
    calls = []

    def reply_lost(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:

            def lose():
                connection_lose()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")  # the reply that never comes

            transaction.on_commit(lose)  # after the COMMIT went through

    monkeypatch.setattr(record, "endpoints_lock", reply_lost)

    engine._record([_Result(claim, _REFUSED) for claim in claims])

    assert calls  # the circuits' update ran, and its commit's reply was lost
    assert "the database is unreachable" in caplog.text  # so the recorder tried again
    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.consecutive_failures, state.circuit_state) == (2, CircuitState.CLOSED)


def _commit_reply_lost_after(monkeypatch, module, name, committed):
    """The connection drops at the first COMMIT after ``module.name`` first ran (a database
    restart at that moment): after the commit went through (``committed``), before its reply
    arrived; or before it went through. Returns a list that gets an item when it happened."""
    real, real_commit = getattr(module, name), connection.commit
    armed, fired = [], []

    def commit_reply_lost():
        armed.clear()
        fired.append(1)
        if not committed:
            connection_lose()  # the COMMIT never arrives: the transaction is rolled back
            real_commit()
        real_commit()
        connection_lose()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the reply that never comes

    def run_then_arm(*args, **kwargs):
        result = real(*args, **kwargs)
        if not fired:  # the first commit after it only
            armed.append(1)
        return result

    monkeypatch.setattr(module, name, run_then_arm)
    monkeypatch.setattr(
        connection, "commit", lambda: (commit_reply_lost if armed else real_commit)()
    )
    return fired


def _as_a_task(work):
    """``work()``, run again once after a database error, as a task retries itself
    (tasks.py); what the run that got through returned."""
    try:
        return work()
    except OperationalError:
        connection.close()
        return work()


def _delivered_once(delivery, receiver):
    """Received once, delivered by its first attempt, its lease cleared, that attempt logged
    once."""
    assert len(receiver.received("/hook")) == 1
    assert (delivery.status, delivery.attempts, delivery.leased_until) == (
        DeliveryStatus.DELIVERED,
        1,
        None,
    )
    assert list(delivery.attempt_log.values_list("number", "error_kind")) == [(1, "")]


@pytest.mark.parametrize("committed", [True, False])
def test_a_claim_whose_commit_reply_is_lost_sends_what_it_leased_once(
    school, receiver, engine, monkeypatch, caplog, committed
):
    """The connection drops at the claim's COMMIT (a database restart at that moment): after
    the commit went through, before its reply arrived; or before it went through. The claim
    finds out which: what it leased is sent at once, not left leased and unsent until the
    lease runs out and then logged as an interrupted attempt that never was; what it did not
    lease is claimed again by the task's retry."""
    receiver.script("/hook", default=Reply(status=200))
    delivery_id = _delivery(school, receiver.url("/hook"))
    fired = _commit_reply_lost_after(monkeypatch, claim_module, "endpoints_lock", committed)

    sent = _as_a_task(lambda: engine.dispatch([delivery_id]))
    assert engine.drain(timeout=10)

    assert fired
    assert sent == 1
    _delivered_once(Delivery.objects.get(pk=delivery_id), receiver)
    recovered = "committed but its answer was lost" in caplog.text
    assert recovered is committed  # else the task's retry claimed it


def test_a_process_keeps_copies_only_of_the_webhooks_it_sent_to_lately(school, monkeypatch):
    # Given a process that read a webhook more than a minute ago, then never again (deleted since,
    # say), and one it reads now
    forgotten, current = SubscriptionFactory(school=school), SubscriptionFactory(school=school)
    version = {pk: (row.updated_at, 1) for pk, row in ((s.pk, s) for s in (forgotten, current))}
    claim_module._subscriptions_get({forgotten.pk: version[forgotten.pk]})
    version_read, read_at, copy = claim_module._cache[forgotten.pk]
    claim_module._cache[forgotten.pk] = (version_read, read_at - 61, copy)
    monkeypatch.setattr(claim_module, "_cache_pruned_at", time.monotonic() - 61)

    # When the process reads another webhook a minute later
    claim_module._subscriptions_get({current.pk: version[current.pk]})

    # Then the old copy is gone: its memory is not held for the life of the process
    assert forgotten.pk not in claim_module._cache
    assert current.pk in claim_module._cache


def test_a_process_reads_webhooks_as_the_orm_gives_them(school, django_assert_num_queries):
    """Its copies of the webhooks (two fixed statements on PostgreSQL) are what
    ``select_related("school")`` and a prefetch of the secrets that still sign give: every
    field, the school's, the secrets newest first without the expired one, each secret's
    webhook; nothing more is read when the send uses them."""
    from django.db.models import Prefetch, Q

    from subscriptions.models import SigningSecret

    webhooks = [
        SubscriptionFactory(
            school=school, payload_filter={"field": "course.id", "op": "eq", "value": "c1"}
        ),
        SubscriptionFactory(school=school, custom_headers={"X-Lms": "a"}, max_concurrency=3),
        SubscriptionFactory(school=school),
    ]
    first = webhooks[0]
    now = timezone.now()
    SigningSecret.objects.create(
        subscription=first, secret_encrypted="rotated", created_at=now + dt.timedelta(seconds=1)
    )
    SigningSecret.objects.create(
        subscription=first, secret_encrypted="expired", expires_at=now - dt.timedelta(hours=1)
    )
    SigningSecret.objects.create(
        subscription=first, secret_encrypted="expiring", expires_at=now + dt.timedelta(hours=1)
    )
    pks = [webhook.pk for webhook in webhooks] + [uuid.uuid4()]  # one deleted meanwhile
    db_now()  # the database's clock measured, as it is in a worker by then

    with django_assert_num_queries(2):
        read = {webhook.pk: webhook for webhook in claim_module._subscriptions_read(pks)}
        for webhook in read.values():
            assert webhook.school.slug == school.slug
            for secret in webhook.signing_secrets_cached:
                assert secret.subscription is webhook

    secrets = SigningSecret.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    ).order_by("-created_at")
    expected = Subscription.objects.select_related("school").prefetch_related(
        Prefetch("signing_secrets", queryset=secrets, to_attr="signing_secrets_cached")
    )
    assert sorted(read) == sorted(webhook.pk for webhook in webhooks)
    for webhook in expected.filter(pk__in=pks):
        copy = read[webhook.pk]
        for field in Subscription._meta.concrete_fields:
            assert getattr(copy, field.attname) == getattr(webhook, field.attname), field.name
        for field in type(school)._meta.concrete_fields:
            assert getattr(copy.school, field.attname) == getattr(webhook.school, field.attname)
        assert [
            (s.pk, s.secret_encrypted, s.created_at, s.expires_at)
            for s in copy.signing_secrets_cached
        ] == [
            (s.pk, s.secret_encrypted, s.created_at, s.expires_at)
            for s in webhook.signing_secrets_cached
        ]
    assert [s.secret_encrypted for s in read[first.pk].signing_secrets_cached][:1] == ["rotated"]
    assert "expired" not in [s.secret_encrypted for s in read[first.pk].signing_secrets_cached]
    assert len(read[first.pk].signing_secrets_cached) == 3


@pytest.fixture
def process_engine(engine, monkeypatch):
    """The test's engine as this process's sending engine (what the fan-out task hands to)."""
    monkeypatch.setattr(dispatch_module, "_dispatchers", {os.getpid(): engine})
    return engine


def _published(school, url):
    """An event for a new webhook at ``url``, awaiting its fan-out."""
    SubscriptionFactory(school=school, url=url, topics=["*"])
    return event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})


def _xmin(table, pk):
    """The transaction that last wrote the row."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_the_fan_out_claims_what_it_sends_itself_in_its_own_transaction(
    school, receiver, process_engine
):
    """The deliveries a fan-out task sends from its own process are leased by the transaction
    that inserts them: one commit, and one flush to the disk, where there were two. Nothing
    goes before that commit."""
    receiver.script("/hook", default=Reply(status=200, delay_seconds=1.0))
    event = _published(school, receiver.url("/hook"))

    with CaptureQueriesContext(connection) as queries:
        assert events_fan_out_waiting(dispatch=True) == 1
    receiver.wait_for(1, path="/hook", timeout=10)  # in flight, its answer slow

    delivery = Delivery.objects.get(event=event)
    assert (delivery.attempts, delivery.leased_until is not None) == (1, True)
    assert _xmin("deliveries_delivery", delivery.pk) == _xmin("events_event", event.pk)
    # The event is marked fanned out by the claim's first statement, the lock of the webhook,
    # not by a statement of its own.
    event.refresh_from_db()
    assert event.fanned_out_at is not None
    marks = [q["sql"] for q in queries.captured_queries if "UPDATE events_event" in q["sql"]]
    assert len(marks) == 1
    assert "pg_advisory_xact_lock" in marks[0]
    assert process_engine.drain(timeout=10)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert process_engine._slots_take_now(process_engine.slots + 1) == process_engine.slots


@pytest.mark.parametrize("committed", [True, False])
def test_a_fan_out_whose_commit_reply_is_lost_sends_what_it_claimed_once(
    school, receiver, process_engine, monkeypatch, caplog, committed
):
    """The connection drops at the commit of a fan-out that claimed the deliveries it sends
    itself: after the commit went through, before its reply arrived; or before it went
    through. If it went through, what it leased is sent at once, not left leased and unsent
    until the lease runs out and then logged as an interrupted attempt that never was; if not,
    the task's retry fans the event out again. The delivery goes once either way."""
    receiver.script("/hook", default=Reply(status=200))
    event = _published(school, receiver.url("/hook"))
    fired = _commit_reply_lost_after(
        monkeypatch, dispatch_module, "deliveries_dispatch_inserted", committed
    )

    fanned_out = _as_a_task(lambda: events_fan_out_waiting(dispatch=True))
    receiver.wait_for(1, path="/hook", timeout=10)
    assert process_engine.drain(timeout=10)

    assert fired
    assert fanned_out == 1
    _delivered_once(Delivery.objects.get(event=event), receiver)
    recovered = "A fan-out committed but its answer was lost" in caplog.text
    assert recovered is committed  # else the task's retry fanned it out
    assert process_engine._slots_take_now(process_engine.slots + 1) == process_engine.slots


def test_with_no_send_slot_free_the_fan_out_leaves_the_hand_off_until_after_its_commit(
    school, receiver, process_engine, monkeypatch, caplog
):
    """Every send slot of the process is taken: the fan-out leases nothing itself, and the
    hand-off after its commit waits for a slot as before (here in vain: the delivery is left,
    unleased, to the sweeper)."""
    receiver.script("/hook", default=Reply(status=200))
    event = _published(school, receiver.url("/hook"))
    monkeypatch.setattr(dispatch_module, "_SLOT_WAIT_SECONDS", 0.2)
    taken = process_engine._slots_take_now(process_engine.slots)

    with CaptureQueriesContext(connection) as queries:
        assert events_fan_out_waiting(dispatch=True) == 1

    delivery = Delivery.objects.get(event=event)
    assert (delivery.status, delivery.attempts, delivery.leased_until) == (
        DeliveryStatus.PENDING,
        0,
        None,
    )
    assert "No send slot free" in caplog.text
    # No claim, no lock: the event is marked fanned out by a statement of its own.
    event.refresh_from_db()
    assert event.fanned_out_at is not None
    marks = [q["sql"] for q in queries.captured_queries if "UPDATE events_event" in q["sql"]]
    assert [sql.startswith("UPDATE") for sql in marks] == [True]
    process_engine._slots_give(taken)
    assert process_engine._slots_take_now(process_engine.slots + 1) == process_engine.slots


def test_a_fan_out_stores_what_waits_for_a_full_webhook_without_a_message(
    school, receiver, process_engine, monkeypatch, settings
):
    """Deliveries past the first the fan-out sends itself get a message each, for any worker;
    but those whose webhook the fan-out's claim found full would only be left waiting by that
    message's claim: they are stored waiting instead, and the attempts in flight take them up
    one by one. A webhook with free slots still gets its messages."""
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2  # the fan-out sends the first 2 itself
    receiver.script(
        "/full", Reply(status=200, delay_seconds=1.0), default=Reply(status=200, delay_seconds=0.2)
    )
    full = SubscriptionFactory(school=school, url=receiver.url("/full"), max_concurrency=1)
    event_publish(school=school, type="course.created", data={"course": {"id": "c0"}})
    assert events_fan_out_waiting(dispatch=True) == 1
    receiver.wait_for(1, path="/full", timeout=10)  # its one slot taken, answered in 1 s
    other = SubscriptionFactory(school=school, url=receiver.url("/other"), max_concurrency=8)
    with transaction.atomic():
        for number in range(1, 4):
            event_publish(
                school=school, type="course.created", data={"course": {"id": f"c{number}"}}
            )
    messages: list[str] = []
    monkeypatch.setattr(
        fan_out_module, "deliveries_enqueue", lambda ids, **kwargs: messages.extend(map(str, ids))
    )

    assert events_fan_out_waiting(dispatch=True) == 3

    later = Delivery.objects.exclude(event__data__course__id="c0")
    waiting = later.filter(subscription=full, leased_until__isnull=True)
    assert waiting.count() == 3  # the one sent itself, left by its claim, and two past those
    assert not waiting.filter(enqueued_at__isnull=False).exists()  # none has a message
    with_messages = later.filter(subscription=other, enqueued_at__isnull=False)
    # The other webhook's past the first two: free slots, a message each.
    assert sorted(messages) == sorted(str(pk) for pk in with_messages.values_list("pk", flat=True))
    assert len(messages) == 2
    receiver.wait_for(4, path="/full", timeout=10)  # taken up behind each attempt
    assert process_engine.drain(timeout=10)
    assert Delivery.objects.filter(subscription=full, status=DeliveryStatus.DELIVERED).count() == 4
    assert receiver.max_in_flight("/full") == 1


def test_a_fan_out_sends_no_message_past_its_own_claim_for_what_would_only_wait(
    school, receiver, process_engine, monkeypatch, settings
):
    """Past the deliveries the fan-out sends itself, it reads every webhook of the rest: a
    full one's and those of one whose circuit waits for its probe are stored waiting with no
    message (each message's claim would only leave them so, at a claim's cost each), and
    what they wait for takes them up: the attempt in flight, the probe. Only the webhook that
    may send now gets its message."""
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 1  # the fan-out claims the first one itself
    receiver.script("/full", Reply(status=200, delay_seconds=1.0))
    SubscriptionFactory(school=school, url=receiver.url("/full"), max_concurrency=1)
    event_publish(school=school, type="course.created", data={"course": {"id": "c0"}})
    assert events_fan_out_waiting(dispatch=True) == 1
    receiver.wait_for(1, path="/full", timeout=10)  # its one slot taken for a second
    broken = SubscriptionFactory(school=school, url=receiver.url("/broken"))
    EndpointState.objects.create(
        subscription=broken,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        probe_at=timezone.now() + dt.timedelta(minutes=5),
    )
    free = SubscriptionFactory(school=school, url=receiver.url("/free"))
    event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    messages: list[str] = []
    monkeypatch.setattr(
        fan_out_module, "deliveries_enqueue", lambda ids, **kwargs: messages.extend(map(str, ids))
    )

    assert events_fan_out_waiting(dispatch=True) == 1

    later = Delivery.objects.filter(event__data__course__id="c1")
    assert later.count() == 3
    held = later.exclude(subscription=free)
    assert not held.filter(enqueued_at__isnull=False).exists()  # no message for any of them
    assert not held.filter(leased_until__isnull=False).exists()
    sent_itself = later.filter(subscription=free, enqueued_at__isnull=True).exists()
    # The free webhook's: a message, unless it was the one the fan-out claimed and sent.
    assert messages == ([] if sent_itself else [str(later.get(subscription=free).pk)])
    if not sent_itself:
        dispatch_module.deliveries_dispatch(delivery_ids=messages)
    receiver.wait_for(1, path="/free", timeout=10)
    receiver.wait_for(2, path="/full", timeout=10)  # taken up behind the attempt in flight
    assert process_engine.drain(timeout=10)
    assert receiver.max_in_flight("/full") == 1
    assert receiver.received("/broken") == []
    assert set(
        later.filter(status=DeliveryStatus.PENDING).values_list("subscription_id", flat=True)
    ) == {broken.pk}


def test_a_receiver_host_is_down_after_a_network_failure_until_it_answers_again():
    """Its other webhooks' deliveries then count among the failing receivers' (the first
    timeouts of a host gone down: the webhooks not tried yet are down too); any answer from
    the host, whatever its status, ends it. A refusal that never reached the network does
    not count."""
    sending = Dispatcher(slots=2)
    try:

        def over(url: str, result: TransportResult) -> None:
            delivery = Delivery(subscription=Subscription(url=url))
            claim = claim_module.Claim(
                delivery=delivery,
                number=1,
                token=uuid.uuid4(),
                started_at=timezone.now(),
                trigger="automatic",
            )
            with sending._lock:
                sending._attempt_over(_Result(claim, result))

        timeout = TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT)
        blocked = TransportResult(request_headers={}, error_kind=ErrorKind.BLOCKED)
        error_answer = TransportResult(
            request_headers={}, status=500, error_kind=ErrorKind.HTTP_STATUS
        )

        over("https://hooks.example.org/school/1", timeout)
        over("http://other.example.org/x", blocked)
        assert sending._failing_room().hosts_down == {"hooks.example.org:443"}
        over("https://hooks.example.org:443/school/2", error_answer)
        assert sending._failing_room().hosts_down == set()
    finally:
        sending.stop(timeout=1)


def test_an_attempt_counts_in_the_failing_receivers_room_until_its_own_result():
    """A delivery whose lease ran out mid-attempt may be claimed again by the same process:
    the first attempt's result ends its own count, not the second attempt's."""
    sending = Dispatcher(slots=2)
    try:
        delivery = Delivery(subscription=Subscription(url="https://hooks.example.org/x"))
        first, second = (
            claim_module.Claim(
                delivery=delivery,
                number=number,
                token=uuid.uuid4(),
                started_at=timezone.now(),
                trigger="automatic",
                failing=True,
            )
            for number in (1, 2)
        )
        with sending._lock:  # both in flight, as ``_submit_one`` counts them
            sending._failing |= {(delivery.pk, first.token), (delivery.pk, second.token)}
            sending._attempt_over(
                _Result(first, TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT))
            )

        assert sending._failing_room().in_flight == 1
    finally:
        sending.stop(timeout=1)


def _claim_of(url: str, *, failing: bool = False) -> claim_module.Claim:
    return claim_module.Claim(
        delivery=Delivery(subscription=Subscription(url=url)),
        number=1,
        token=uuid.uuid4(),
        started_at=timezone.now(),
        trigger="automatic",
        failing=failing,
    )


def test_a_receiver_host_silent_with_requests_in_flight_counts_as_failing(settings, monkeypatch):
    """A host gone down answers nothing until its first requests time out. Once its requests
    have been in flight for WEBHOOKS_SILENT_HOST_SECONDS with no answer, its webhooks count as
    failing (the next claims hold them within the room), and the attempts already in flight
    to it take room too though they were claimed while it looked well. An answer from the
    host ends its silence (when it comes in, not when it is recorded); a host that answers
    meanwhile never counts, and refusals that never reached it say nothing."""
    settings.WEBHOOKS_SILENT_HOST_SECONDS = 2.0
    monkeypatch.setattr(dispatch_module, "_SILENT_CHECK_SECONDS", 0.0)
    now = [1000.0]
    monkeypatch.setattr(dispatch_module, "_clock", lambda: now[0])
    sending = Dispatcher(slots=8)
    try:
        hanging = [_claim_of("https://down.example.org/school/1") for _ in range(3)]
        refused = _claim_of("https://down.example.org/school/9")  # disabled, say
        answering = [_claim_of("https://up.example.org/school/2") for _ in range(2)]
        retry = _claim_of("https://down.example.org/school/3", failing=True)
        # A failing receiver's retry, expected to hang: says nothing of its host.
        probe = _claim_of("https://other.example.org/x", failing=True)
        with sending._lock:
            for claim in [*hanging, refused, *answering, retry, probe]:
                sending._attempt_in(claim, receiver_host(claim.delivery.subscription.url))
        room = sending._failing_room()
        assert (room.hosts_down, room.in_flight) == (set(), 2)  # not silent yet: the two

        now[0] += 1.5
        sending._heard("up.example.org:443")  # an answer comes in, recorded later
        disabled = TransportResult(request_headers={}, error_kind=ErrorKind.DISABLED)
        with sending._lock:
            sending._attempt_over(_Result(refused, disabled))
        now[0] += 1.0
        room = sending._failing_room()
        assert room.hosts_down == {"down.example.org:443"}
        # The retry (once, though its host is silent), the probe and the three to the host.
        assert room.in_flight == 2 + 3

        sending._heard("down.example.org:443")  # the host answers after all
        room = sending._failing_room()
        assert (room.hosts_down, room.in_flight) == (set(), 2)
    finally:
        sending.stop(timeout=1)


def test_attempts_in_flight_to_a_host_found_down_count_in_the_failing_receivers_room():
    """The first timeout marks the host down; its other attempts, claimed before, hold their
    threads until they time out too, and count in the room meanwhile (only once each, whether
    or not they were claimed within it)."""
    sending = Dispatcher(slots=8)
    try:
        first, second = (_claim_of("https://down.example.org/school/1") for _ in range(2))
        within = _claim_of("https://down.example.org/school/2", failing=True)
        with sending._lock:
            for claim in (first, second, within):
                sending._attempt_in(claim, "down.example.org:443")
        assert sending._failing_room().in_flight == 1

        timeout = TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT)
        with sending._lock:
            sending._attempt_over(_Result(first, timeout))
        room = sending._failing_room()
        assert (room.hosts_down, room.in_flight) == ({"down.example.org:443"}, 2)

        with sending._lock:
            sending._attempt_over(_Result(second, timeout))
            sending._attempt_over(_Result(within, timeout))
        room = sending._failing_room()
        assert (room.hosts_down, room.in_flight) == ({"down.example.org:443"}, 0)
        assert sending._hosts_flight == {}  # nothing kept for a host with nothing in flight
    finally:
        sending.stop(timeout=1)


def test_a_host_down_not_tried_for_ten_minutes_is_forgotten(monkeypatch):
    """A long-running process does not keep every receiver host that ever went down: one not
    tried here for ``_DOWN_FORGET_SECONDS`` is forgotten (its webhooks' own failure streaks
    still count), unless a request to it is in flight; a host that failed again since, or
    answered, is kept as it is."""
    now = [1000.0]
    monkeypatch.setattr(dispatch_module, "_clock", lambda: now[0])
    monkeypatch.setattr(dispatch_module, "_SILENT_CHECK_SECONDS", 0.0)
    forget = dispatch_module._DOWN_FORGET_SECONDS
    sending = Dispatcher(slots=8)
    try:
        timeout = TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT)
        answer = TransportResult(request_headers={}, status=200)

        def over(url: str, result: TransportResult) -> None:
            claim = _claim_of(url)
            with sending._lock:
                sending._attempt_in(claim, receiver_host(url))
                sending._attempt_over(_Result(claim, result))

        over("https://gone.example.org/1", timeout)
        over("https://again.example.org/1", timeout)
        over("https://busy.example.org/1", timeout)
        over("https://back.example.org/1", timeout)
        now[0] += forget / 2
        over("https://again.example.org/2", timeout)  # failed again: down from here
        over("https://back.example.org/2", answer)  # answered: up
        in_flight = _claim_of("https://busy.example.org/2")
        with sending._lock:
            sending._attempt_in(in_flight, "busy.example.org:443")
        assert sending._failing_room().hosts_down == {
            "gone.example.org:443",
            "again.example.org:443",
            "busy.example.org:443",
        }

        now[0] = 1000.0 + forget + 1
        sending._heard("busy.example.org:443")  # in flight, not silent: only down
        room = sending._failing_room()
        assert room.hosts_down == {"again.example.org:443", "busy.example.org:443"}
        assert sending._hosts_down_at.keys() == room.hosts_down

        now[0] += forget / 2 + dispatch_module._DOWN_PRUNE_SECONDS
        with sending._lock:
            sending._attempt_over(_Result(in_flight, timeout))  # failed: down again, from now
        assert sending._failing_room().hosts_down == {"busy.example.org:443"}
    finally:
        sending.stop(timeout=1)


def test_a_host_that_answered_within_a_deadline_is_not_down_after_a_timeout(settings, monkeypatch):
    """A receiver host many schools share, one school's receiver hanging there while the
    others answer, is not down after that receiver's timeouts (the others' webhooks would
    have been held within the failing receivers' room, behind every dead receiver's retries):
    only a host that answered nothing here within a request's deadline is. The answers are
    forgotten once older than that."""
    settings.WEBHOOKS_TIMEOUT_SECONDS = 15.0
    now = [1000.0]
    monkeypatch.setattr(dispatch_module, "_clock", lambda: now[0])
    sending = Dispatcher(slots=8)
    try:
        timeout = TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT)
        hanging = _claim_of("https://shared.example.org/school/1")
        answering = _claim_of("https://shared.example.org/school/2")
        with sending._lock:
            for claim in (hanging, answering):
                sending._attempt_in(claim, "shared.example.org:443")
        sending._heard("shared.example.org:443")  # school 2's receiver answers
        now[0] += 14.0
        with sending._lock:
            sending._attempt_over(
                _Result(answering, TransportResult(request_headers={}, status=200))
            )
            sending._attempt_over(_Result(hanging, timeout))  # school 1's, after its deadline
        assert sending._failing_room().hosts_down == set()

        now[0] += 2.0  # nothing answered within the last deadline: down
        again = _claim_of("https://shared.example.org/school/1")
        with sending._lock:
            sending._attempt_in(again, "shared.example.org:443")
            sending._attempt_over(_Result(again, timeout))
        assert sending._failing_room().hosts_down == {"shared.example.org:443"}

        now[0] += dispatch_module._DOWN_PRUNE_SECONDS
        sending._failing_room()
        assert sending._hosts_answered == {}  # older than a deadline: forgotten
    finally:
        sending.stop(timeout=1)


def test_a_failing_receivers_retries_say_nothing_new_of_its_host(monkeypatch):
    """A worker process that sends a host only the retries and probes of its failing
    receivers (another process sends the host's healthy receivers theirs) neither finds the
    host silent while they hang nor down when they time out: the host's other webhooks would
    have been held within the failing receivers' room. An attempt that was not expected to
    fail still tells."""
    monkeypatch.setattr(dispatch_module, "_SILENT_CHECK_SECONDS", 0.0)
    now = [1000.0]
    monkeypatch.setattr(dispatch_module, "_clock", lambda: now[0])
    sending = Dispatcher(slots=8)
    try:
        timeout = TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT)
        retries = [
            _claim_of(f"https://shared.example.org/dead/{n}", failing=True) for n in range(3)
        ]
        with sending._lock:
            for claim in retries:
                sending._attempt_in(claim, "shared.example.org:443")
        now[0] += 15.0
        assert sending._failing_room().hosts_down == set()  # not silent
        with sending._lock:
            for claim in retries:
                sending._attempt_over(_Result(claim, timeout))
        assert sending._failing_room().hosts_down == set()  # not down

        healthy_looking = _claim_of("https://shared.example.org/school/7")
        with sending._lock:
            sending._attempt_in(healthy_looking, "shared.example.org:443")
            sending._attempt_over(_Result(healthy_looking, timeout))
        assert sending._failing_room().hosts_down == {"shared.example.org:443"}
        assert (sending._hosts_flight, sending._hosts_waiting) == ({}, {})
    finally:
        sending.stop(timeout=1)
