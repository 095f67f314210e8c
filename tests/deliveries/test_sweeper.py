"""The sweeper's re-drive: what it sends again, what it leaves to others, and what it reads."""

import contextlib
import datetime as dt

import pytest
from django.db import connection, transaction
from django.utils import timezone

from deliveries.models import CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.services import deliveries_sweep, event_fan_out, redrive
from deliveries.services.claim import deliveries_claim, deliveries_claim_waiting
from deliveries.services.record import CircuitChanges, deliveries_record
from deliveries.services.send import request_build, request_send
from events.models import Event
from events.services import event_publish
from events.services import publish as publish_module
from subscriptions.models import Subscription
from tests.database import rows_clone, rows_fetched, statements_prepared_early
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def _waiting(school, count, **fields):
    """A webhook with ``count`` deliveries waiting (no message), due one after another."""
    webhook = SubscriptionFactory(school=school, url="http://127.0.0.1:9/hook", **fields)
    ids = []
    for number in range(count):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        event_fan_out(event_id=event.id)
        # Only this webhook's: the school's other webhooks have their own rows to play.
        Delivery.objects.filter(event=event).exclude(subscription=webhook).delete()
        ids += Delivery.objects.filter(event=event).values_list("pk", flat=True)
    due = timezone.now() - dt.timedelta(minutes=10)
    for number, delivery in enumerate(ids):
        Delivery.objects.filter(pk=delivery).update(
            enqueued_at=None, next_attempt_at=due + dt.timedelta(seconds=number)
        )
    return webhook, ids


def _re_driven(ids):
    re_driven = Delivery.objects.filter(pk__in=ids, enqueued_at__isnull=False)
    return set(re_driven.values_list("pk", flat=True))


def test_a_webhook_with_nothing_in_flight_gets_as_many_as_its_concurrency_oldest_first(school):
    _webhook, ids = _waiting(school, 5, max_concurrency=2, topics=["course.created"])

    result = deliveries_sweep()

    assert result.deliveries_enqueued == 2
    assert _re_driven(ids) == set(ids[:2])
    # The attempts they start take up the other three when they finish.
    claims = deliveries_claim(delivery_ids=[str(pk) for pk in ids[:2]]).claims
    assert [claim.waiting_behind for claim in claims] == [True, True]


def test_a_webhook_whose_concurrency_reads_zero_gets_the_platform_default(school, settings):
    settings.WEBHOOKS_ENDPOINT_CONCURRENCY = 3
    webhook, _ids = _waiting(school, 4, topics=["course.created"])
    Subscription.objects.filter(pk=webhook.pk).update(max_concurrency=0)  # as the claim reads it

    assert deliveries_sweep().deliveries_enqueued == 3


def test_the_sweeper_leaves_waiting_deliveries_to_whoever_will_send_them(school):
    _busy, busy_ids = _waiting(school, 2, topics=["course.created"])
    paused, paused_ids = _waiting(school, 2, topics=["course.created"])
    broken, broken_ids = _waiting(school, 2, topics=["course.created"])
    catching_up, catching_up_ids = _waiting(school, 2, topics=["course.created"])
    now = timezone.now()
    # An attempt of the busy webhook in flight: when it ends, it takes up what waits behind it.
    Delivery.objects.filter(pk=busy_ids[0]).update(
        leased_until=now + dt.timedelta(minutes=1), enqueued_at=now
    )
    Subscription.objects.filter(pk=paused.pk).update(paused_at=now)
    EndpointState.objects.create(
        subscription=broken, circuit_state=CircuitState.OPEN, probe_at=now + dt.timedelta(hours=1)
    )
    Subscription.objects.filter(pk=catching_up.pk).update(catching_up_since=now)
    # A message sent long ago that nobody took: lost, whatever else the webhook has in flight.
    lost = busy_ids[1]
    Delivery.objects.filter(pk=lost).update(enqueued_at=now - dt.timedelta(minutes=5))

    result = deliveries_sweep()

    assert result.deliveries_enqueued == 1
    assert Delivery.objects.get(pk=lost).enqueued_at > now - dt.timedelta(seconds=5)
    held = paused_ids + broken_ids + catching_up_ids
    assert Delivery.objects.filter(pk__in=held, enqueued_at__isnull=False).count() == 0


@pytest.mark.parametrize("any_values", [False, True], ids=["custom plans", "generic plans"])
def test_a_sweep_reads_a_few_rows_whatever_waits_behind_paused_broken_and_busy_webhooks(
    school, any_values
):
    now = timezone.now()
    paused, paused_ids = _waiting(school, 1, topics=["course.created"])
    broken, broken_ids = _waiting(school, 1, topics=["course.created"])
    _busy, busy_ids = _waiting(school, 2, topics=["course.created"])
    _idle, idle_ids = _waiting(school, 1, topics=["course.created"])
    Subscription.objects.filter(pk=paused.pk).update(paused_at=now)
    # The broken webhook's probe is due: its oldest delivery goes, found among its own.
    EndpointState.objects.create(
        subscription=broken, circuit_state=CircuitState.OPEN, probe_at=now - dt.timedelta(seconds=1)
    )
    Delivery.objects.filter(pk=busy_ids[1]).update(
        leased_until=now + dt.timedelta(minutes=1), enqueued_at=now
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")  # statistics of before the backlog
    # 3,000 due deliveries waiting behind each of the paused, the broken and the busy webhook.
    for delivery in (paused_ids[0], broken_ids[0], busy_ids[0]):
        rows_clone(Delivery, delivery, 3000, {"id": "gen_random_uuid()", "replay_number": "n"})

    with contextlib.ExitStack() as stack:
        if any_values:
            stack.enter_context(statements_prepared_early(any_values=True))
            with transaction.atomic():
                deliveries_sweep()  # each statement once: the sweep below runs them prepared
                transaction.set_rollback(True)
        with transaction.atomic():
            with rows_fetched(Delivery) as sweep:
                result = deliveries_sweep()
            re_driven = _re_driven(idle_ids)
            transaction.set_rollback(True)

    assert (result.deliveries_enqueued, result.probes_sent) == (1, 1)
    assert re_driven == set(idle_ids)
    # Every read of the sweep together, as they ran: not 9,000 (or 3,000 for the probe).
    assert sweep.count <= 40


def test_a_broken_webhook_whose_deliveries_all_have_a_message_out_still_gets_its_probe(school):
    broken, ids = _waiting(school, 2, topics=["course.created"])
    now = timezone.now()
    lost_at = now - dt.timedelta(minutes=5)
    # Messages sent before the circuit opened and lost with the broker's queue: nothing waits.
    Delivery.objects.filter(pk__in=ids).update(enqueued_at=lost_at)
    EndpointState.objects.create(
        subscription=broken, circuit_state=CircuitState.OPEN, probe_at=now - dt.timedelta(seconds=1)
    )

    result = deliveries_sweep()

    assert (result.deliveries_enqueued, result.probes_sent) == (0, 1)


def test_a_disabled_webhooks_backlog_is_failed_at_its_concurrency_whatever_its_circuit(school):
    """Nothing is sent for a disabled webhook (its attempts are refused), so its open circuit
    holds nothing back: its backlog is failed at its concurrency, not one probe at a time."""
    webhook, ids = _waiting(school, 5, max_concurrency=2, topics=["course.created"])
    now = timezone.now()
    Subscription.objects.filter(pk=webhook.pk).update(
        is_active=False, disabled_reason="Disabled after 5 days of failures"
    )
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=now - dt.timedelta(days=1),
        probe_at=now + dt.timedelta(hours=1),
    )

    result = deliveries_sweep()

    # The sweeper sends as many as its concurrency, not nothing until the probe an hour away.
    assert (result.deliveries_enqueued, result.probes_sent) == (2, 0)
    assert _re_driven(ids) == set(ids[:2])
    claims = deliveries_claim(delivery_ids=[str(pk) for pk in ids[:2]]).claims
    assert len(claims) == 2
    assert EndpointState.objects.get(pk=webhook.pk).circuit_state == CircuitState.OPEN
    results = [request_send(request_build(claim)) for claim in claims]
    assert {result.error_kind for result in results} == {ErrorKind.DISABLED}

    circuits = CircuitChanges()
    deliveries_record(claims=claims, results=results, pull_waiting=False, circuits=circuits)

    assert circuits.opened == set()  # so the slots they free take up the next ones
    assert Delivery.objects.filter(pk__in=ids[:2], status=DeliveryStatus.FAILED).count() == 2
    taken = deliveries_claim_waiting(freed={webhook.pk: 2}).claims
    assert {claim.delivery.pk for claim in taken} == set(ids[2:4])  # the oldest of the rest


def test_an_active_webhooks_open_circuit_still_holds_its_backlog_for_the_probe(school):
    webhook, _ids = _waiting(school, 3, max_concurrency=2, topics=["course.created"])
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        probe_at=timezone.now() + dt.timedelta(hours=1),
    )

    assert deliveries_sweep().deliveries_enqueued == 0
    assert deliveries_claim_waiting(freed={webhook.pk: 2}).claims == []


@pytest.mark.parametrize("held_by", ["pause", "open circuit"])
def test_a_lost_send_now_message_is_sent_again_whatever_holds_the_webhooks_other_deliveries(
    school, held_by
):
    """Sending now bypasses the pause and the circuit breaker; when its message is lost, the
    sweeper sends it again rather than leaving it until the webhook resumes or its circuit
    closes (a second "send now" is refused: it is already queued)."""
    webhook, [held, manual] = _waiting(school, 2, topics=["course.created"])
    if held_by == "pause":
        Subscription.objects.filter(pk=webhook.pk).update(paused_at=timezone.now())
    else:
        EndpointState.objects.create(
            subscription=webhook,
            circuit_state=CircuitState.OPEN,
            circuit_changed_at=timezone.now(),
            probe_at=timezone.now() + dt.timedelta(hours=1),
        )
    lost_at = timezone.now() - dt.timedelta(minutes=5)  # its message never reached a worker
    Delivery.objects.filter(pk=manual).update(next_trigger="manual", enqueued_at=lost_at)

    result = deliveries_sweep()

    assert result.deliveries_enqueued == 1
    assert Delivery.objects.get(pk=manual).enqueued_at > lost_at
    assert Delivery.objects.get(pk=held).enqueued_at is None  # the others still wait


def test_open_circuits_with_nothing_to_probe_do_not_starve_one_with_a_backlog(school, monkeypatch):
    """Webhooks whose circuit opened long ago and whose deliveries have all ended (retry window
    over, not yet auto-disabled) keep a due ``probe_at``. They must not take every place in the
    sweeper's probe scan (``limit``, 2,000 in production, 2 here) forever, leaving a webhook
    that has deliveries waiting for its probe without one."""
    now = timezone.now()
    for minutes in (60, 50):  # opened first: their probe_at is the oldest
        idle = SubscriptionFactory(school=school, topics=["course.created"])
        EndpointState.objects.create(
            subscription=idle,
            circuit_state=CircuitState.OPEN,
            circuit_changed_at=now - dt.timedelta(days=2),
            probe_at=now - dt.timedelta(minutes=minutes),
        )
    broken = SubscriptionFactory(school=school, topics=["course.created"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    Event.objects.filter(pk=event.pk).update(fanned_out_at=now)
    delivery = Delivery.objects.create(
        school=school,
        event=event,
        subscription=broken,
        event_type=event.type_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at=now - dt.timedelta(minutes=5),
    )
    EndpointState.objects.create(
        subscription=broken,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=now - dt.timedelta(minutes=30),
        probe_at=now - dt.timedelta(minutes=1),
    )

    enqueued: list = []
    monkeypatch.setattr(redrive, "deliveries_enqueue", lambda ids, **kw: enqueued.extend(ids))

    probes = [deliveries_sweep(limit=2).probes_sent for _ in range(3)]

    assert sum(probes) >= 1
    assert delivery.pk in enqueued


def test_a_sweep_sends_more_than_one_messages_worth_behind_everyone_elses(
    school, settings, own_queue, django_capture_on_commit_callbacks
):
    """Deliveries whose messages went out 10 s ago and were not taken: a few are lost messages,
    sent again at the default priority; more than one message's worth is a large operation
    still queued behind other work, or a queue the broker lost, sent again behind every other
    message, so the new events go first (and the large one's stays behind them)."""
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2
    lost_at = timezone.now() - dt.timedelta(minutes=5)
    _webhook, [few] = _waiting(school, 1, topics=["course.created"])
    Delivery.objects.filter(pk=few).update(enqueued_at=lost_at)
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_sweep()
    _webhook, many = _waiting(school, 3, topics=["course.created"], max_concurrency=10)
    Delivery.objects.filter(pk__in=many).update(enqueued_at=lost_at)
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_sweep()

    by_priority = own_queue.deliveries()
    assert set(by_priority) == {0, 9}
    assert by_priority[0] == [str(few)]
    assert sorted(by_priority[9]) == sorted(str(pk) for pk in many)


@pytest.mark.django_db(transaction=True)
def test_an_event_left_waiting_a_few_seconds_is_asked_for_not_left_for_ten(
    school, own_queue, monkeypatch
):
    """An event that waited 3 s with no fan-out request pending (its request was lost, or
    the task that promised to read it died, and nothing has been published since) gets a
    request from the next sweep: a worker fans it out at once, not when it is old enough
    for the sweeper itself (10 s). One that waited 1 s is a task's to take."""
    monkeypatch.setattr(publish_module, "_published_hook", None)  # its request never went
    fresh = event_publish(school=school, type="course.created", data={"course": {"id": "a"}})
    deliveries_sweep()
    assert own_queue.tasks() == []

    Event.objects.filter(pk=fresh.pk).update(created_at=timezone.now() - dt.timedelta(seconds=3))
    deliveries_sweep()
    deliveries_sweep()  # the request is pending now: no second message

    assert own_queue.tasks() == ["deliveries.events_fan_out"]
    assert Event.objects.get(pk=fresh.pk).fanned_out_at is None  # the worker's to do
