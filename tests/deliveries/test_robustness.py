"""What a hostile or broken receiver, template or worker cannot do to the delivery log."""

import datetime as dt

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from deliveries.models import (
    AttemptTrigger,
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
)
from deliveries.services import (
    deliveries_sweep,
    delivery_attempt,
    delivery_retrigger,
    event_fan_out,
    events_fan_out_waiting,
    record,
)
from deliveries.services.claim import deliveries_claim
from deliveries.services.dispatch import _Result, dispatcher
from deliveries.services.record import deliveries_record
from deliveries.services.redrive import send_tests_lost
from events.models import Event
from events.services import event_publish
from subscriptions.models import Subscription
from tests.database import connection_lose, rows_clone, rows_read
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import TransportResult

pytestmark = pytest.mark.django_db


def _delivery(school, url, **fields):
    SubscriptionFactory(school=school, url=url, **fields)
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    return Delivery.objects.get(pk=delivery_id)


def test_a_nul_byte_in_the_answer_is_stored_replaced_and_the_delivery_is_final(school, receiver):
    receiver.script("/nul", Reply(status=200, body=b"ok\x00binary", headers={"X-Odd": "a\x00b"}))
    delivery = _delivery(school, receiver.url("/nul"))

    attempt = delivery_attempt(delivery_id=delivery.id)

    stored = DeliveryAttempt.objects.get(pk=attempt.pk)
    assert stored.response_body == "ok\ufffdbinary"
    assert stored.response_headers["X-Odd"] == "a\ufffdb"
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    "retry_after", ["99999999999999999999", "9" * 5000, "\u00b2", "not a date"]
)
def test_a_hostile_retry_after_is_recorded_not_a_crash(school, receiver, retry_after):
    receiver.script("/busy", Reply(status=503, headers={"Retry-After": retry_after}))
    delivery = _delivery(school, receiver.url("/busy"))

    attempt = delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert attempt.response_status == 503
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at <= delivery.created_at + dt.timedelta(seconds=3)


def test_a_template_that_fails_on_real_data_fails_its_delivery_only(school, receiver):
    broken = SubscriptionFactory(
        school=school,
        url=receiver.url("/broken"),
        body_template='{"even": {{ data.score|divisibleby:"2"|yesno:"true,false" }}}',
    )
    fine = SubscriptionFactory(school=school, url=receiver.url("/fine"))
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})

    event_fan_out(event_id=event.id)

    by_subscription = {d.subscription_id: d for d in Delivery.objects.filter(event=event)}
    assert by_subscription[broken.pk].status == DeliveryStatus.FAILED
    assert by_subscription[broken.pk].last_error_kind == ErrorKind.TEMPLATE
    assert "failed on this event's data" in by_subscription[broken.pk].last_error
    assert by_subscription[fine.pk].status == DeliveryStatus.PENDING


def test_an_event_that_cannot_be_fanned_out_does_not_stop_the_sweeper(school, monkeypatch):
    from deliveries.services import fan_out

    stuck = event_publish(school=school, type="course.created", data={"course": {"id": "a"}})
    later = _delivery(school, "http://127.0.0.1:9/x")
    Event.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    Delivery.objects.filter(pk=later.pk).update(enqueued_at=timezone.now() - dt.timedelta(hours=1))
    real = fan_out.delivery_build

    def failing(*, event, subscription, now, bodies=None):
        if event.pk == stuck.pk:
            raise RuntimeError("cannot fan this one out")
        return real(event=event, subscription=subscription, now=now, bodies=bodies)

    monkeypatch.setattr(fan_out, "delivery_build", failing)

    result = deliveries_sweep()

    assert result.deliveries_enqueued == 1  # the deliveries were still re-driven
    assert Event.objects.get(pk=stuck.pk).fanned_out_at is None  # left waiting, tried again


def test_a_retrigger_stays_manual_even_if_its_message_is_re_driven_as_automatic(school, receiver):
    receiver.script("/down", default=Reply(status=500))
    delivery = _delivery(school, receiver.url("/down"))
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None, attempts=5
    )

    delivery_retrigger(delivery=delivery)
    attempt = delivery_attempt(delivery_id=delivery.id)  # as the sweeper's message would

    delivery.refresh_from_db()
    assert attempt.trigger == AttemptTrigger.MANUAL
    assert delivery.status == DeliveryStatus.FAILED  # no automatic retries after a manual one
    assert delivery.next_trigger == AttemptTrigger.AUTOMATIC


def test_a_late_workers_real_result_replaces_the_interrupted_entry(school):
    delivery = _delivery(school, "http://127.0.0.1:9/x")
    [claim] = deliveries_claim(delivery_ids=[str(delivery.pk)]).claims
    # The lease ran out; another worker took over and logged attempt 1 as interrupted.
    Delivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - dt.timedelta(seconds=1)
    )
    [takeover] = deliveries_claim(delivery_ids=[str(delivery.pk)]).claims
    assert DeliveryAttempt.objects.get(number=1).error_kind == ErrorKind.INTERRUPTED

    deliveries_record(
        claims=[claim],
        results=[TransportResult(request_headers={}, status=200, body=b"late but fine")],
    )

    first = DeliveryAttempt.objects.get(delivery=delivery, number=1)
    assert (first.response_status, first.response_body, first.error_kind) == (
        200,
        "late but fine",
        "",
    )
    assert takeover.number == 2


def test_custom_headers_that_carry_credentials_are_sent_but_not_logged(school, receiver):
    delivery = _delivery(
        school,
        receiver.url("/h"),
        custom_headers={"X-Api-Key": "k-123", "X-Auth-Token": "t-456", "X-Tenant": "lycee"},
    )

    attempt = delivery_attempt(delivery_id=delivery.id)

    [received] = receiver.received("/h")
    assert (received.headers["x-api-key"], received.headers["x-auth-token"]) == ("k-123", "t-456")
    stored = DeliveryAttempt.objects.get(pk=attempt.pk).request_headers
    assert (stored["X-Api-Key"], stored["X-Auth-Token"]) == ("[redacted]", "[redacted]")
    assert stored["X-Tenant"] == "lycee"
    assert stored["webhook-signature"].startswith("v1,")


def test_a_send_test_that_never_finished_is_failed_by_the_sweeper_and_not_a_backlog(school, client):
    delivery = _delivery(school, "http://127.0.0.1:9/x")
    Delivery.objects.filter(pk=delivery.pk).update(
        is_test=True,
        next_trigger=AttemptTrigger.TEST,
        created_at=timezone.now() - dt.timedelta(minutes=10),
        next_attempt_at=timezone.now() - dt.timedelta(minutes=10),
        enqueued_at=None,  # sent in the request that made it, never by a worker
    )

    health = client.get("/health/").json()
    deliveries_sweep()

    delivery.refresh_from_db()
    assert health["oldest_due_delivery_seconds"] == 0.0
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "The Send Test did not finish: the process sending it stopped."


def test_the_sweeper_finds_the_lost_send_tests_without_reading_every_waiting_delivery(school):
    delivery = _delivery(school, "http://127.0.0.1:9/x")
    long_ago = timezone.now() - dt.timedelta(hours=1)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=long_ago, enqueued_at=None)
    # 3,000 deliveries waiting for a broken receiver for an hour, and one lost Send Test.
    rows_clone(Delivery, delivery.pk, 3000, {"id": "gen_random_uuid()", "replay_number": "n"})
    rows_clone(
        Delivery,
        delivery.pk,
        1,
        {"id": "gen_random_uuid()", "replay_number": "3001", "is_test": "true"},
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
    lost = send_tests_lost(now=timezone.now())

    read = rows_read(*lost.values("pk").query.sql_with_params())
    # The sweeper runs in a worker, whose sessions prepare what they run over and over: the
    # plan PostgreSQL may keep for any parameters reads as few.
    read_by_any_plan = rows_read(*lost.values("pk").query.sql_with_params(), generic=True)

    assert read <= 2
    assert read_by_any_plan <= 2
    assert list(lost.values_list("replay_number", flat=True)) == [3001]


@pytest.mark.django_db(transaction=True)
def test_a_result_the_database_refuses_does_not_lose_the_rest_of_its_batch(school, caplog):
    SubscriptionFactory(school=school, url="http://127.0.0.1:9/good")
    SubscriptionFactory(school=school, url="http://127.0.0.1:9/bad")
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    good, bad = Delivery.objects.filter(pk__in=event_fan_out(event_id=event.id))
    claims = deliveries_claim(delivery_ids=[str(good.pk), str(bad.pk)]).claims
    by_pk = {claim.delivery.pk: claim for claim in claims}
    results = {
        good.pk: TransportResult(request_headers={}, status=200, duration_ms=12),
        bad.pk: TransportResult(request_headers={}, status=200, duration_ms=2**40),  # no int4
    }

    deliveries_record(
        claims=[by_pk[good.pk], by_pk[bad.pk]], results=[results[good.pk], results[bad.pk]]
    )

    # The batch failed as a whole; its results were then written one by one.
    assert Delivery.objects.get(pk=good.pk).status == DeliveryStatus.DELIVERED
    assert DeliveryAttempt.objects.get(delivery=good).duration_ms == 12
    # The refused one keeps its lease, so it is sent again once the lease runs out; the log
    # says why, and does not call it an attempt that outlived its lease.
    refused = Delivery.objects.get(pk=bad.pk)
    assert refused.status == DeliveryStatus.PENDING
    assert refused.lease_token == by_pk[bad.pk].token
    assert "lease ran out" not in caplog.text
    assert (
        f"The database refused the result of attempt 1 of delivery {bad.pk}; it is sent "
        "again once its lease runs out"
    ) in caplog.text
    # Its attempt is in the log all the same, with what could be stored of it.
    assert DeliveryAttempt.objects.get(delivery=bad).error_message == (
        "The attempt's answer could not be stored."
    )


@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_is_raised_for_a_retry_not_taken_for_refused_rows(
    school, caplog
):
    delivery = _delivery(school, "http://127.0.0.1:9/x")
    claims = deliveries_claim(delivery_ids=[str(delivery.pk)]).claims
    connection_lose()

    with pytest.raises((OperationalError, InterfaceError)):
        deliveries_record(claims=claims, results=[TransportResult(request_headers={}, status=200)])

    assert "recording one by one" not in caplog.text
    assert "Recording attempt" not in caplog.text
    connection.close()
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING  # retried later


def test_one_batch_ends_and_starts_failure_streaks_and_a_success_wins_over_a_failure(school):
    long_ago = timezone.now() - dt.timedelta(days=2)
    recovered = SubscriptionFactory(
        school=school, url="http://127.0.0.1:9/a", failing_since=long_ago
    )
    breaking = SubscriptionFactory(school=school, url="http://127.0.0.1:9/b")
    mixed = SubscriptionFactory(school=school, url="http://127.0.0.1:9/c")
    still = SubscriptionFactory(school=school, url="http://127.0.0.1:9/d", failing_since=long_ago)
    events = [
        event_publish(school=school, type="course.created", data={"course": {"id": f"c{n}"}})
        for n in range(2)
    ]
    ids = [str(pk) for event in events for pk in event_fan_out(event_id=event.id)]
    claims = deliveries_claim(delivery_ids=ids).claims
    ok, failed = (
        TransportResult(request_headers={}, status=200),
        TransportResult(request_headers={}, status=500, error_kind=ErrorKind.HTTP_STATUS),
    )
    outcome = {recovered.pk: [ok, ok], breaking.pk: [failed, failed], mixed.pk: [failed, ok]}
    outcome[still.pk] = [failed, failed]
    results = [outcome[claim.delivery.subscription_id].pop() for claim in claims]

    before = timezone.now()
    deliveries_record(claims=claims, results=results)

    streaks = dict(Subscription.objects.filter(school=school).values_list("pk", "failing_since"))
    assert streaks[recovered.pk] is None
    assert streaks[breaking.pk] is not None
    assert streaks[breaking.pk] >= before
    assert streaks[mixed.pk] is None  # a success in the batch ends what a failure would start
    assert streaks[still.pk] == long_ago  # a running streak keeps its start


@pytest.mark.django_db(transaction=True)
def test_fan_out_raises_a_lost_database_connection_for_a_retry_instead_of_going_one_by_one(
    school, caplog
):
    SubscriptionFactory(school=school, url="http://127.0.0.1:9/x")
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    connection_lose()

    with pytest.raises((OperationalError, InterfaceError)):
        events_fan_out_waiting()

    assert "one by one" not in caplog.text
    connection.close()
    assert Event.objects.get(pk=event.pk).fanned_out_at is None  # the task's retry fans it out
    assert events_fan_out_waiting() == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweep_raises_a_lost_database_connection_for_a_retry_without_logging_errors(
    school, caplog
):
    connection_lose()

    with pytest.raises((OperationalError, InterfaceError)):
        deliveries_sweep()

    assert [record.message for record in caplog.records if record.levelname == "ERROR"] == []
    connection.close()
    assert deliveries_sweep().events_fanned_out == 0  # the retry runs as a sweep always does


@pytest.mark.django_db(transaction=True)
def test_a_webhook_deleted_mid_attempt_does_not_fail_the_recording_of_the_others(school):
    """Its network failure would have counted towards its circuit; its state row cannot be
    created any more, and the batch it shares with another webhook's 410 is still recorded
    in full: that webhook is disabled."""
    deleted = SubscriptionFactory(school=school, url="http://127.0.0.1:9/a", topics=["*"])
    gone = SubscriptionFactory(school=school, url="http://127.0.0.1:9/b", topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    claims = deliveries_claim(delivery_ids=event_fan_out(event_id=event.id)).claims
    Subscription.objects.filter(pk=deleted.pk).delete()  # while its attempt was in flight
    results = {
        deleted.pk: TransportResult(
            request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
        ),
        gone.pk: TransportResult(request_headers={}, status=410, error_kind=ErrorKind.HTTP_STATUS),
    }
    batch = [_Result(claim, results[claim.delivery.subscription_id]) for claim in claims]

    dispatcher()._record(batch)

    assert Subscription.objects.get(pk=gone.pk).is_active is False
    assert Delivery.objects.get(subscription=gone).status == DeliveryStatus.FAILED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "lost_in", ["_circuits_update", "probe_deliveries", "_late_attempts_record"]
)
def test_a_connection_lost_after_the_results_are_written_does_not_count_them_twice(
    school, monkeypatch, caplog, settings, lost_in
):
    """The recorder writes the results, then loses its connection (a database restart) before
    the circuit's count, after it (while it looks for the delivery to probe the circuit the
    failures opened), or before the late attempts; trying again must not write or count them
    a second time, nor call attempts it made itself late."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    subscription = SubscriptionFactory(school=school, url="http://127.0.0.1:9/x", topics=["*"])
    events = [
        event_publish(school=school, type="course.created", data={"course": {"id": f"c{n}"}})
        for n in range(2)
    ]
    ids = [str(pk) for event in events for pk in event_fan_out(event_id=event.id)]
    claims = deliveries_claim(delivery_ids=ids).claims
    refused = TransportResult(
        request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
    )
    real = getattr(record, lost_in)
    calls = []

    def connection_lost_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            connection_lose()
        return real(*args, **kwargs)

    monkeypatch.setattr(record, lost_in, connection_lost_first)
    if lost_in == "_late_attempts_record":
        # Reached when an attempt's lease ran out before it was recorded: one of the two.
        Delivery.objects.filter(pk=ids[0]).update(lease_token=None)

    dispatcher()._record([_Result(claim, refused) for claim in claims])

    assert len(calls) == 2  # lost once, then done
    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.consecutive_failures, state.circuit_state) == (2, CircuitState.OPEN)
    assert DeliveryAttempt.objects.filter(delivery__subscription=subscription).count() == 2
    late = [r.message for r in caplog.records if "lease ran out" in r.message]
    expected = 1 if lost_in == "_late_attempts_record" else 0
    assert late == ["1 attempt finished after its lease ran out"] * expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("committed", ["all", "the first"])
def test_results_whose_write_committed_before_the_connection_was_lost_are_not_called_late(
    school, monkeypatch, caplog, settings, committed
):
    """The statement that writes the results commits, then the connection drops before its
    answer arrives (a database restart at that moment); or, recording one by one, the first
    result is written and the connection drops. Trying again must see what was written: not
    write it again or log it as finished after its lease ran out, write the rest, count the
    failures once, and send the retries due soon their messages rather than leave them to
    the sweeper."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    down = SubscriptionFactory(school=school, url="http://127.0.0.1:9/down", topics=["*"])
    busy = SubscriptionFactory(school=school, url="http://127.0.0.1:9/busy", topics=["*"])
    events = [
        event_publish(school=school, type="course.created", data={"course": {"id": f"c{n}"}})
        for n in range(2)
    ]
    ids = [str(pk) for event in events for pk in event_fan_out(event_id=event.id)]
    claims = deliveries_claim(delivery_ids=ids).claims
    outcome = {
        down.pk: TransportResult(
            request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
        ),
        busy.pk: TransportResult(request_headers={}, status=500, error_kind=ErrorKind.HTTP_STATUS),
    }
    real = record._results_write
    writes = []

    def reply_lost_first(claims, attempts, *args, **kwargs):
        writes.append(len(claims))
        if len(writes) == 1 and committed == "the first":
            claims, attempts, args = claims[:1], attempts[:1], args[:1]
        written = real(claims, attempts, *args, **kwargs)
        if len(writes) == 1:
            connection_lose()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # the reply that never comes
        return written

    enqueued = []
    monkeypatch.setattr(record, "_results_write", reply_lost_first)
    monkeypatch.setattr(
        record, "deliveries_enqueue", lambda ids, countdown=None: enqueued.extend(ids)
    )

    dispatcher()._record(
        [_Result(claim, outcome[claim.delivery.subscription_id]) for claim in claims]
    )

    assert writes == ([4] if committed == "all" else [4, 3])  # the rest written on the retry
    assert [r.message for r in caplog.records if "lease ran out" in r.message] == []
    attempts = DeliveryAttempt.objects.filter(delivery__school=school)
    assert sorted(attempts.values_list("delivery__subscription_id", "number")) == sorted(
        [(down.pk, 1), (down.pk, 1), (busy.pk, 1), (busy.pk, 1)]
    )
    state = EndpointState.objects.get(pk=down.pk)
    assert (state.consecutive_failures, state.circuit_state) == (2, CircuitState.OPEN)
    assert {str(pk) for pk in enqueued} == set(ids)  # the retries (and the circuit's probe)
    assert Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).count() == 4
