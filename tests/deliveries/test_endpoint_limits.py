"""Each webhook within its limits: concurrency, rate and circuit breaker, decided at claim time,
with real receivers on 127.0.0.1."""

import base64
import datetime as dt
import json
import socket
import threading
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common.clock import db_now
from deliveries.models import AttemptTrigger, CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.services import claim as claim_module
from deliveries.services import deliveries_attempt, event_fan_out
from deliveries.services import record as record_module
from deliveries.services.attempts import claims_followup
from deliveries.services.claim import (
    _ENDPOINTS_SQL,
    _WAITING_SQL,
    FailingRoom,
    deliveries_claim,
    deliveries_claim_inserted,
    deliveries_claim_waiting,
    endpoints_lock,
)
from deliveries.services.dispatch import _quotas_fit, dispatcher
from deliveries.services.fan_out import Bodies, deliveries_insert, delivery_build
from deliveries.services.record import CircuitChanges, RecordProgress, deliveries_record
from events.services import event_publish
from subscriptions.models import Subscription
from tests.database import (
    rows_clone,
    rows_held_elsewhere,
    rows_read,
    statements_prepared_early,
)
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import TransportResult

pytestmark = pytest.mark.django_db


_REFUSED = TransportResult(request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="x")
_ANSWERED = TransportResult(request_headers={}, status=200)


def _deliveries(school, url, count, **fields):
    subscription = SubscriptionFactory(school=school, url=url, topics=["*"], **fields)
    ids = []
    for number in range(count):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += event_fan_out(event_id=event.id)
    return subscription, [str(delivery_id) for delivery_id in ids]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_claim_keeps_failing_receivers_within_their_room_in_the_process(school):
    """Retries of webhooks with network failures in a row, a due probe, and deliveries to a
    receiver host whose last attempt failed share the process's room for failing receivers:
    the claim takes no more than is left of it and leaves the rest waiting. A healthy webhook
    is not held back by it."""
    now = timezone.now()
    retrying = [
        SubscriptionFactory(school=school, url=f"https://a{n}.example.org/x", topics=["*"])
        for n in range(2)
    ]
    probed = SubscriptionFactory(school=school, url="https://b.example.org/x", topics=["*"])
    sibling = SubscriptionFactory(school=school, url="https://down.example.org/y", topics=["*"])
    healthy = SubscriptionFactory(school=school, url="https://down.example.org.eu/z", topics=["*"])
    for webhook in retrying:
        EndpointState.objects.create(subscription=webhook, consecutive_failures=2)
    EndpointState.objects.create(
        subscription=probed,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        opened_count=1,
        probe_at=now - dt.timedelta(seconds=1),
    )
    ids = []
    for number in range(3):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
    room = FailingRoom(limit=4, in_flight=1, hosts_down=frozenset({"down.example.org:443"}))

    outcome = deliveries_claim(delivery_ids=ids, failing=room)

    claimed = Counter(claim.delivery.subscription_id for claim in outcome.claims)
    assert claimed[healthy.pk] == 3
    assert all(
        not claim.failing for claim in outcome.claims if claim.delivery.subscription == healthy
    )
    failing = [claim for claim in outcome.claims if claim.delivery.subscription != healthy]
    assert len(failing) == 3  # 4, one in flight already; 10 would go (3 + 3, a probe, 3)
    assert all(claim.failing for claim in failing)
    # Held for want of room: 7, or 9 when the probe's turn came after the room was full (its
    # webhook's two others then count too, rather than waiting behind the probe).
    assert outcome.failing_held in (7, 9)
    left = Delivery.objects.filter(pk__in=outcome.waiting)
    assert left.count() == 12 - 3  # the probed webhook's two others wait for its probe anyway
    assert not left.filter(subscription=healthy).exists()
    assert not left.filter(enqueued_at__isnull=False).exists()  # waiting, without a message
    # Without a process's room (Send Test, the API's synchronous attempt), no such limit.
    assert deliveries_claim(
        delivery_ids=[
            str(pk) for pk in left.filter(subscription=sibling).values_list("pk", flat=True)
        ]
    ).claims


def test_a_claim_takes_no_more_than_the_webhooks_concurrency_and_leaves_the_rest_waiting(school):
    _subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 5, max_concurrency=2)

    first = deliveries_claim(delivery_ids=ids)
    second = deliveries_claim(delivery_ids=ids)

    assert [str(claim.delivery.pk) for claim in first.claims] == ids[:2]
    assert sorted(first.waiting) == sorted(ids[2:])
    assert second.claims == []  # both slots are still in flight
    waiting = Delivery.objects.filter(pk__in=ids[2:])
    assert set(waiting.values_list("enqueued_at", flat=True)) == {None}  # no message: waiting
    assert all(claim.waiting_behind for claim in first.claims)


def test_the_platform_default_concurrency_applies_when_the_webhook_sets_none(school, settings):
    settings.WEBHOOKS_ENDPOINT_CONCURRENCY = 3
    _subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 5)

    outcome = deliveries_claim(delivery_ids=ids)

    assert len(outcome.claims) == 3
    assert len(outcome.waiting) == 2


def test_finished_attempts_hand_their_slots_to_the_deliveries_that_waited(school, receiver):
    receiver.script("/ok", default=Reply(status=200))
    _subscription, ids = _deliveries(school, receiver.url("/ok"), 4, max_concurrency=2)

    deliveries_attempt(delivery_ids=ids)  # two sent; the two that waited get their message

    assert len(receiver.received("/ok")) == 2
    waited = Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING)
    assert sorted(str(pk) for pk in waited.values_list("pk", flat=True)) == sorted(ids[2:])
    assert None not in set(waited.values_list("enqueued_at", flat=True))


def test_a_worker_takes_up_the_waiting_deliveries_of_the_webhooks_it_just_served(school):
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 4, max_concurrency=2)
    first = deliveries_claim(delivery_ids=ids)
    assert deliveries_claim_waiting(freed={subscription.pk: 10}).claims == []
    Delivery.objects.filter(pk__in=[c.delivery.pk for c in first.claims]).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None, leased_until=None
    )  # as their results are recorded

    outcome = deliveries_claim_waiting(freed={subscription.pk: 10})

    assert sorted(str(claim.delivery.pk) for claim in outcome.claims) == sorted(ids[2:])
    assert outcome.waiting == []
    # They fill both slots again: whatever a later claim leaves waiting is theirs to take up.
    assert all(claim.waiting_behind for claim in outcome.claims)


def test_a_claim_that_fills_the_last_slot_takes_up_what_later_claims_leave_waiting(school):
    # Another worker's claim can find the webhook full after this one, with nothing waiting yet
    # when this one was made: its deliveries wait for this claim's attempts to finish.
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 4, max_concurrency=3)
    first = deliveries_claim(delivery_ids=ids[:2])
    second = deliveries_claim(delivery_ids=ids[2:3])
    third = deliveries_claim(delivery_ids=ids[3:])

    assert (first.waiting, second.waiting, third.waiting) == ([], [], ids[3:])
    assert not any(claim.waiting_behind for claim in first.claims)  # a slot was still free
    assert [claim.waiting_behind for claim in second.claims] == [True]  # it took the last one
    Delivery.objects.filter(pk=second.claims[0].delivery.pk).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None, leased_until=None
    )  # as its result is recorded, the dispatcher takes up what waits behind it
    taken = deliveries_claim_waiting(freed={subscription.pk: 1})
    assert [str(claim.delivery.pk) for claim in taken.claims] == ids[3:]


def test_recording_an_attempt_nobody_waited_behind_says_whether_deliveries_wait_now(school):
    # Claimed with a slot free and nothing waiting, nobody is to take up behind these attempts;
    # but deliveries published after them may wait now, for attempts claimed later that filled
    # the webhook. The record says which: those attempts' slots must not stay free.
    quiet, busy, marked = (
        SubscriptionFactory(school=school, url=f"http://127.0.0.1:9/{name}", topics=["*"], **limit)
        for name, limit in [
            ("quiet", {"max_concurrency": 2}),
            ("busy", {"max_concurrency": 2}),
            ("marked", {"max_concurrency": 1}),
        ]
    )

    def published(number, kept):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids = event_fan_out(event_id=event.id)
        Delivery.objects.filter(pk__in=ids).exclude(subscription__in=kept).delete()
        Delivery.objects.filter(pk__in=ids).update(enqueued_at=None)  # no messages
        return [str(pk) for pk in Delivery.objects.filter(pk__in=ids).values_list("pk", flat=True)]

    first = published(0, [quiet, busy, marked])
    published(1, [marked])  # waits behind the first
    claims = deliveries_claim(delivery_ids=first, waiting=True).claims
    marks = {claim.delivery.subscription_id: claim.waiting_behind for claim in claims}
    assert marks == {quiet.pk: False, busy.pk: False, marked.pk: True}
    published(2, [busy])  # waits now, though nothing did when busy's attempt was claimed

    progress = RecordProgress()
    deliveries_record(claims=claims, results=[_ANSWERED] * 3, pull_waiting=False, progress=progress)

    # Not quiet (nothing waits) nor marked (its own take-up comes anyway).
    assert progress.waiting == {busy.pk}


def test_a_fan_out_gives_a_free_slot_to_the_oldest_waiting_delivery_not_to_its_own(school):
    # A slot freed by an attempt whose claim left nothing waiting behind it is taken by the
    # next fan-out: it goes to what has waited longest, as a take-up's would, and the new
    # delivery waits its turn (it would otherwise overtake the backlog at every fan-out).
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3, max_concurrency=2)
    first = deliveries_claim(delivery_ids=ids)
    assert first.waiting == ids[2:]
    Delivery.objects.filter(pk=first.claims[0].delivery.pk).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None, leased_until=None
    )  # one slot free again, nothing taken up
    other = SubscriptionFactory(school=school, url="http://127.0.0.1:9/other", topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "new"}})
    new = [
        delivery_build(event=event, subscription=webhook, now=db_now(), bodies=Bodies(event))
        for webhook in (subscription, other)
    ]
    for delivery in new:
        delivery.enqueued_at = None  # stored waiting, as the fan-out stores what it sends

    with transaction.atomic():
        deliveries_insert(new)
        outcome = deliveries_claim_inserted(deliveries=new, capacity=10)

    taken = [str(claim.delivery.pk) for claim in outcome.claims]
    assert taken == [ids[2], str(new[1].pk)]  # the backlog's head; the other webhook's own
    assert outcome.waiting == [str(new[0].pk)]
    assert all(claim.waiting_behind for claim in outcome.claims if claim.delivery.pk != new[1].pk)
    waiting = Delivery.objects.get(pk=new[0].pk)
    assert (waiting.leased_until, waiting.enqueued_at, waiting.attempts) == (None, None, 0)
    # It is taken up in its turn, by the attempt that took the backlog's head.
    Delivery.objects.filter(pk=ids[2]).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None, leased_until=None
    )
    after = deliveries_claim_waiting(freed={subscription.pk: 1})
    assert [claim.delivery.pk for claim in after.claims] == [new[0].pk]


def test_a_fan_out_reads_which_of_its_other_deliveries_would_only_wait(school):
    """The fan-out's claim also reads the webhooks of the deliveries past those it claims (not
    locking them): a full webhook's, and a failing one's while the process's share is full
    and some of its requests are in flight, would only wait (``rest_waiting``: no message).
    A failing one with nothing in flight gets its message (another process may have room),
    as does a healthy one."""
    hosts_down = frozenset({"down.example.org:443"})
    failing = SubscriptionFactory(school=school, url="https://down.example.org/busy")
    idle = SubscriptionFactory(school=school, url="https://down.example.org/idle")
    healthy = SubscriptionFactory(school=school, url="https://up.example.org/x")
    full = SubscriptionFactory(school=school, url="https://up.example.org/y", max_concurrency=1)
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c0"}})
    bodies = Bodies(event)
    in_flight = [
        delivery_build(event=event, subscription=webhook, now=db_now(), bodies=bodies)
        for webhook in (failing, full)
    ]
    deliveries_insert(in_flight)
    Delivery.objects.filter(pk__in=[d.pk for d in in_flight]).update(
        leased_until=timezone.now() + dt.timedelta(minutes=1), attempts=1
    )
    later = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    bodies = Bodies(later)
    new = {
        webhook.pk: delivery_build(event=later, subscription=webhook, now=db_now(), bodies=bodies)
        for webhook in (healthy, failing, idle, full)
    }
    first = [new[healthy.pk]]
    first[0].enqueued_at = None  # stored waiting, as the fan-out stores what it sends
    rest = [new[webhook.pk] for webhook in (failing, idle, full)]
    room = FailingRoom(limit=2, in_flight=2, hosts_down=hosts_down)  # full

    with transaction.atomic():
        deliveries_insert(list(new.values()))
        outcome = deliveries_claim_inserted(deliveries=first, capacity=10, failing=room, rest=rest)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()"
            )
            [locks] = cursor.fetchone()

    assert [claim.delivery.pk for claim in outcome.claims] == [new[healthy.pk].pk]
    assert sorted(outcome.rest_waiting) == sorted(str(new[pk].pk) for pk in (failing.pk, full.pk))
    assert locks == 1  # the claimed delivery's webhook only


@pytest.mark.parametrize(("most", "read"), [(1, False), (2, True)])
def test_a_fan_out_does_not_read_the_rest_of_too_many_webhooks(school, monkeypatch, most, read):
    """Past ``_REST_WEBHOOKS_MAX`` webhooks the rest is not read (its first sends would wait
    for that read): every one of them gets its message, as before."""
    monkeypatch.setattr(claim_module, "_REST_WEBHOOKS_MAX", most)
    full = [
        SubscriptionFactory(school=school, url=f"https://up.example.org/{n}", max_concurrency=1)
        for n in range(2)
    ]
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c0"}})
    bodies = Bodies(event)
    in_flight = [
        delivery_build(event=event, subscription=webhook, now=db_now(), bodies=bodies)
        for webhook in full
    ]
    deliveries_insert(in_flight)
    Delivery.objects.filter(pk__in=[d.pk for d in in_flight]).update(
        leased_until=timezone.now() + dt.timedelta(minutes=1), attempts=1
    )
    healthy = SubscriptionFactory(school=school, url="https://up.example.org/x")
    later = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    bodies = Bodies(later)
    first = delivery_build(event=later, subscription=healthy, now=db_now(), bodies=bodies)
    first.enqueued_at = None
    rest = [
        delivery_build(event=later, subscription=webhook, now=db_now(), bodies=bodies)
        for webhook in full
    ]

    with transaction.atomic():
        deliveries_insert([first, *rest])
        outcome = deliveries_claim_inserted(deliveries=[first], capacity=10, rest=rest)

    assert [claim.delivery.pk for claim in outcome.claims] == [first.pk]
    # Both full: read, both wait with no message; past the most read, a message each.
    assert sorted(outcome.rest_waiting) == (sorted(str(d.pk) for d in rest) if read else [])


def test_the_record_reads_a_few_entries_to_tell_whether_deliveries_wait(school):
    # Whether deliveries wait for each webhook of attempts nobody waited behind: a probe of
    # each, not a read of every delivery waiting (3,000 here) at every record.
    busy, ids = _deliveries(school, "http://127.0.0.1:9/busy", 1, max_concurrency=8)
    quiet = SubscriptionFactory(school=school, url="http://127.0.0.1:9/quiet", topics=["none"])
    Delivery.objects.filter(pk=ids[0]).update(enqueued_at=None)
    rows_clone(Delivery, ids[0], 3000, {"id": "gen_random_uuid()", "replay_number": "n"})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
    sql = "SELECT " + record_module._WAITING_FOUND.replace("${unmarked}", "%s").replace(
        "${now}", "%s"
    )
    now = timezone.now()
    params = [[quiet.pk, busy.pk], now, now]

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        [found] = cursor.fetchone()
    read = rows_read(sql, params)

    assert found == [busy.pk]
    assert read <= 2  # one entry of each webhook's waiting deliveries at most


@pytest.mark.parametrize("held_by", ["its slots", "a pause", "an open circuit"])
def test_a_fan_out_reads_no_waiting_deliveries_when_nothing_could_take_a_slot(
    school, monkeypatch, held_by
):
    # Where no slot can go now, the fan-out's new delivery waits as it was stored, and the
    # older ones are not read for nothing.
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3, max_concurrency=1)
    first = deliveries_claim(delivery_ids=ids)  # one in flight, two waiting
    if held_by != "its slots":
        Delivery.objects.filter(pk=first.claims[0].delivery.pk).update(
            status=DeliveryStatus.DELIVERED, next_attempt_at=None, leased_until=None
        )
    if held_by == "a pause":
        Subscription.objects.filter(pk=subscription.pk).update(paused_at=timezone.now())
    if held_by == "an open circuit":
        EndpointState.objects.create(
            subscription=subscription,
            circuit_state=CircuitState.OPEN,
            probe_at=timezone.now() + dt.timedelta(minutes=5),
        )
    event = event_publish(school=school, type="course.created", data={"course": {"id": "new"}})
    new = [
        delivery_build(event=event, subscription=subscription, now=db_now(), bodies=Bodies(event))
    ]
    new[0].enqueued_at = None
    read = []
    monkeypatch.setattr(
        claim_module,
        "_waiting_candidates",
        lambda *args: read.append(args) or [],
    )

    with transaction.atomic():
        deliveries_insert(new)
        outcome = deliveries_claim_inserted(deliveries=new, capacity=10)

    assert (outcome.claims, outcome.waiting, read) == ([], [str(new[0].pk)], [])


def test_each_webhook_takes_up_its_own_waiting_deliveries_whatever_waits_longer_elsewhere(
    school,
):
    # One recorded batch finished attempts of two webhooks. The other webhook's deliveries have
    # waited longer, and more of them than the batch freed slots: they must not take this
    # webhook's share, or its waiting deliveries would be left with nothing in flight.
    busy, _ids = _deliveries(school, "http://127.0.0.1:9/busy", 9, max_concurrency=1)
    quiet, _ids = _deliveries(school, "http://127.0.0.1:9/quiet", 2, max_concurrency=1)
    every = [str(pk) for pk in Delivery.objects.order_by("created_at").values_list("pk", flat=True)]
    first = deliveries_claim(delivery_ids=every)
    assert sorted(claim.delivery.subscription_id for claim in first.claims) == sorted(
        [busy.pk, quiet.pk]
    )
    Delivery.objects.filter(pk__in=[c.delivery.pk for c in first.claims]).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None, leased_until=None
    )  # as their results are recorded

    taken = deliveries_claim_waiting(freed={busy.pk: 1, quiet.pk: 1})

    assert sorted(claim.delivery.subscription_id for claim in taken.claims) == sorted(
        [busy.pk, quiet.pk]
    )
    assert all(
        claim.waiting_behind for claim in taken.claims if claim.delivery.subscription_id == busy.pk
    )


def test_a_manual_send_holds_a_slot_and_takes_up_what_waits_behind_it(school):
    _subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 2, max_concurrency=1)
    Delivery.objects.filter(pk=ids[0]).update(next_trigger=AttemptTrigger.MANUAL)

    manual = deliveries_claim(delivery_ids=ids[:1])  # goes whatever the limits
    automatic = deliveries_claim(delivery_ids=ids[1:])

    assert [str(claim.delivery.pk) for claim in manual.claims] == ids[:1]
    assert automatic.waiting == ids[1:]  # the manual attempt holds the only slot
    assert [claim.waiting_behind for claim in manual.claims] == [True]


@pytest.mark.django_db(transaction=True)
def test_taking_up_waiting_deliveries_sees_those_a_concurrent_claim_is_leaving_waiting(school):
    # A claim that leaves a delivery waiting holds its webhook's lock until it commits; taking
    # up that webhook's waiting deliveries waits for it and then sees the delivery, instead of
    # passing over a row another transaction has locked.
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 1, max_concurrency=1)
    locked, release = threading.Event(), threading.Event()

    def parking_claim():
        try:
            with transaction.atomic():
                endpoints_lock([subscription.pk])
                Delivery.objects.filter(pk=ids[0]).update(enqueued_at=None)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=parking_claim)
    thread.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()
    taken = deliveries_claim_waiting(freed={subscription.pk: 1})
    thread.join(10)

    assert [str(claim.delivery.pk) for claim in taken.claims] == ids


@pytest.mark.django_db(transaction=True)
def test_a_claim_passes_over_deliveries_another_worker_holds_without_waiting_for_it(school):
    _subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3)

    with rows_held_elsewhere(Delivery.objects.filter(pk=ids[1])):
        outcome = deliveries_claim(delivery_ids=ids)  # waiting for the held row would fail it

    assert [str(claim.delivery.pk) for claim in outcome.claims] == [ids[0], ids[2]]
    assert Delivery.objects.get(pk=ids[1]).leased_until is None  # still the other worker's


def test_an_attempt_taken_up_knows_whether_deliveries_still_wait_behind_it(school):
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3, max_concurrency=10)
    Delivery.objects.filter(pk__in=ids).update(enqueued_at=None)  # all three waiting

    first = deliveries_claim_waiting(freed={subscription.pk: 1})
    rest = deliveries_claim_waiting(freed={subscription.pk: 2})

    # Two still wait after the first: when it ends, it takes the next one up.
    assert [claim.waiting_behind for claim in first.claims] == [True]
    # Nothing waits after the last two, and they leave slots free: nobody waits for them.
    assert [claim.waiting_behind for claim in rest.claims] == [False, False]


def test_taking_up_reads_the_few_deliveries_it_takes_not_the_whole_backlog(school):
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 1, max_concurrency=8)
    # 3,000 deliveries made long ago, and statistics of that time (as after an outage); then a
    # backlog of 3,000 more waiting deliveries of the event (replays), due one after another.
    rows_clone(
        Delivery,
        ids[0],
        3000,
        {"id": "gen_random_uuid()", "replay_number": "n", "status": "'delivered'"},
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
    Delivery.objects.filter(pk=ids[0]).update(enqueued_at=None)
    rows_clone(
        Delivery,
        ids[0],
        3000,
        {
            "id": "gen_random_uuid()",
            "replay_number": "3000 + n",
            "next_attempt_at": "r.next_attempt_at + n * interval '1 ms'",
        },
    )
    now = timezone.now()
    oldest = list(
        Delivery.objects.filter(subscription=subscription, status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:2]
    )

    read = rows_read(_WAITING_SQL, [[subscription.pk], [2], now, now])
    # The plans a claim keeps for any values (``endpoints_lock``) read no more.
    read_kept = rows_read(_WAITING_SQL, [[subscription.pk], [2], now, now], generic=True)
    endpoints = [now, now, now, 3, now, now, now, [subscription.pk]]
    counted = rows_read(_ENDPOINTS_SQL, endpoints)
    counted_kept = rows_read(_ENDPOINTS_SQL, endpoints, generic=True)
    taken = deliveries_claim_waiting(freed={subscription.pk: 2}, now=now)

    assert read <= 2 * 4  # its share, four times over: not 3,001
    assert read_kept <= 2 * 4
    assert counted <= 3  # the waiting ones up to the cap: not 3,001
    assert counted_kept <= 3
    assert sorted(claim.delivery.pk for claim in taken.claims) == sorted(oldest)


@pytest.mark.django_db(transaction=True)  # each claim its own transaction, as a worker's
def test_a_claim_plans_its_statements_once_and_leaves_the_session_as_it_was(school):
    """In a worker's session, which prepares what it runs over and over, the claim's statements
    after its lock keep one plan instead of being planned at every claim, on both paths (a
    claim of given deliveries, the take-up of waiting ones); the setting ends with the claim's
    transaction, and a claim inside a caller's transaction does not set it."""
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 13, max_concurrency=20)

    def plans(statement: str) -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE %s",
                [statement + "%"],
            )
            [counts] = cursor.fetchall()
            return counts

    def plan_mode() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            return cursor.fetchone()[0]

    before = plan_mode()
    with statements_prepared_early():
        for delivery_id in ids[:6]:
            assert len(deliveries_claim(delivery_ids=[delivery_id]).claims) == 1
        claimed = plans("SELECT s.id, s.updated_at,")
        after_own = plan_mode()
        Delivery.objects.filter(pk__in=ids[6:12]).update(enqueued_at=None)  # waiting
        for _ in range(6):
            taken = deliveries_claim_waiting(freed={subscription.pk: 1})
            assert len(taken.claims) == 1
        taken_up = plans("SELECT c.id, c.subscription_id,")
        with transaction.atomic():
            assert len(deliveries_claim(delivery_ids=[ids[12]]).claims) == 1
            inside_callers = plan_mode()

    # Five prepared runs each, planned once (PostgreSQL would plan the first five afresh).
    assert claimed == (5, 0)
    assert taken_up == (5, 0)
    assert after_own == before
    assert inside_callers == before


def test_a_rate_limited_webhook_gets_its_budget_and_a_time_to_come_back(school):
    _subscription, ids = _deliveries(
        school, "http://127.0.0.1:9/hook", 5, rate_limit_per_second=2, max_concurrency=10
    )

    outcome = deliveries_claim(delivery_ids=ids)

    assert len(outcome.claims) == 2  # a full bucket: one second's worth
    assert len(outcome.waiting) == 3
    assert outcome.retry_at is not None
    wait = (outcome.retry_at - timezone.now()).total_seconds()
    assert 0 < wait <= 0.5
    state = EndpointState.objects.get(pk=_subscription.pk)
    assert state.rate_tokens == pytest.approx(0.0, abs=0.01)


def test_only_what_a_rate_limit_holds_back_gets_a_message_for_later(settings, own_queue):
    """Of the deliveries a claim leaves waiting, only a rate-limited webhook's get a message,
    for when it has budget again. An open circuit's wait for its probe and a full webhook's
    for its attempts in flight: a message for each would only be claimed to leave them
    waiting again (an open circuit's backlog sent round at every probe time)."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 1
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 5
    _limited, limited = _deliveries(
        SchoolFactory(),
        "http://127.0.0.1:9/limited",
        3,
        rate_limit_per_second=1,
        max_concurrency=10,
    )
    broken, down = _deliveries(
        SchoolFactory(), f"http://127.0.0.1:{_closed_port()}/down", 3, max_concurrency=10
    )
    deliveries_attempt(delivery_ids=down[:1])  # its circuit opens, the probe in 5 s
    _full, full = _deliveries(SchoolFactory(), "http://127.0.0.1:9/full", 2, max_concurrency=1)
    sent_before = own_queue.deliveries()
    ids = limited + down[1:] + full

    outcome = deliveries_claim(delivery_ids=ids)
    claims_followup(ids, outcome)

    assert EndpointState.objects.get(pk=broken.pk).circuit_state == CircuitState.OPEN
    assert sorted(str(claim.delivery.pk) for claim in outcome.claims) == sorted(
        [limited[0], full[0]]
    )
    assert sorted(outcome.waiting) == sorted(limited[1:] + down[1:] + full[1:])
    assert sorted(outcome.woken) == sorted(limited[1:])
    assert outcome.retry_at is not None
    assert 0 < (outcome.retry_at - timezone.now()).total_seconds() <= 1
    sent = own_queue.deliveries()
    assert sent_before == {}
    assert sorted(sent[0]) == sorted(limited[1:])


def test_network_failures_in_a_row_open_the_circuit_and_the_deliveries_then_wait(school, settings):
    settings.WEBHOOKS_CIRCUIT_FAILURES = 3
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 30
    subscription, ids = _deliveries(
        school, f"http://127.0.0.1:{_closed_port()}/hook", 4, max_concurrency=10
    )

    attempts = deliveries_attempt(delivery_ids=ids[:3])
    waiting = deliveries_claim(delivery_ids=ids[3:])

    assert [attempt.error_kind for attempt in attempts] == ["connection"] * 3
    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.consecutive_failures, state.opened_count) == (
        CircuitState.OPEN,
        3,
        1,
    )
    assert 29 <= (state.probe_at - timezone.now()).total_seconds() <= 30
    assert waiting.claims == []  # held back, no attempt spent
    assert Delivery.objects.get(pk=ids[3]).attempts == 0


def test_the_recorder_learns_which_circuits_it_opened_and_takes_up_nothing_behind_them(
    school, settings, django_assert_num_queries
):
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3, max_concurrency=2)
    claims = deliveries_claim(delivery_ids=ids).claims  # two go, the third waits behind them
    refused = TransportResult(
        request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
    )
    circuits = CircuitChanges()

    deliveries_record(
        claims=claims, results=[refused] * len(claims), pull_waiting=False, circuits=circuits
    )

    assert (circuits.opened, circuits.closed) == ({subscription.pk}, set())
    assert all(claim.waiting_behind for claim in claims)
    with django_assert_num_queries(0):  # not even a look: the third waits for the probe
        assert dispatcher()._continue(claims, circuits) == 0
    assert Delivery.objects.get(pk=ids[2]).attempts == 0


def _circuits_opened_together(webhooks: int) -> tuple[list[str], int]:
    """A school's ``webhooks`` webhooks, whose two attempts each fail in one batch of results,
    opening every circuit: the delivery each has waiting behind its attempts, and how many
    statements recording the batch took."""
    school = SchoolFactory()
    for number in range(webhooks):
        SubscriptionFactory(
            school=school, url=f"http://127.0.0.1:9/down-{number}", topics=["*"], max_concurrency=2
        )
    ids = []
    for number in range(3):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
    claims = deliveries_claim(delivery_ids=ids).claims
    assert len(claims) == 2 * webhooks
    behind = sorted(set(ids) - {str(claim.delivery.pk) for claim in claims})
    refused = TransportResult(
        request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
    )
    with CaptureQueriesContext(connection) as statements:
        deliveries_record(
            claims=claims, results=[refused] * len(claims), pull_waiting=False, circuits=None
        )
    return behind, len(statements)


@pytest.mark.django_db(transaction=True)
def test_circuits_that_open_together_get_their_probes_in_one_read_and_one_message(
    catalog, settings, own_queue
):
    """A receiver host that many webhooks point at goes down: their circuits open in the same
    batch of results. Each webhook's probe is its oldest delivery, at the end of the cooldown;
    they are found in one read and sent in one message, however many webhooks."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 30
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 50
    _few, statements_for_two = _circuits_opened_together(2)
    before = timezone.now()
    behind, statements_for_five = _circuits_opened_together(5)

    assert statements_for_five == statements_for_two
    later = [  # (the deliveries, when), of each delivery message for later (the fan-out's
        # messages for now come first)
        (json.loads(base64.b64decode(message["body"]))[0][0], message["headers"]["eta"])
        for message in map(json.loads, own_queue.client.lrange(own_queue.name, 0, -1))
        if message["headers"]["task"] == "deliveries.deliver" and message["headers"]["eta"]
    ]
    probes = [(ids, eta) for ids, eta in later if set(ids) & set(behind)]
    assert len(probes) == 1
    assert sorted(probes[0][0]) == behind
    eta = dt.datetime.fromisoformat(probes[0][1])
    assert 29 <= (eta - before).total_seconds() <= 31


def test_an_open_circuit_lets_one_probe_through_when_its_time_has_come(school, receiver):
    receiver.script("/back", default=Reply(status=200))
    subscription, ids = _deliveries(school, receiver.url("/back"), 3, max_concurrency=10)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=timezone.now() - dt.timedelta(minutes=5),
        consecutive_failures=5,
        opened_count=1,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    outcome = deliveries_claim(delivery_ids=ids)

    assert len(outcome.claims) == 1
    assert outcome.claims[0].probe
    assert EndpointState.objects.get(pk=subscription.pk).circuit_state == CircuitState.HALF_OPEN
    assert deliveries_claim(delivery_ids=ids).claims == []  # one probe at a time


def test_an_answer_to_the_probe_closes_the_circuit(school, receiver):
    receiver.script("/back", default=Reply(status=500))  # any answer proves it reachable
    subscription, ids = _deliveries(school, receiver.url("/back"), 1)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        opened_count=2,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    [attempt] = deliveries_attempt(delivery_ids=ids)

    state = EndpointState.objects.get(pk=subscription.pk)
    assert attempt.response_status == 500
    assert (state.circuit_state, state.consecutive_failures, state.opened_count) == (
        CircuitState.CLOSED,
        0,
        0,
    )
    assert state.probe_at is None


def test_after_a_probe_answers_the_waiting_deliveries_get_messages_for_every_slot(
    school, receiver, django_capture_on_commit_callbacks
):
    receiver.script("/back", default=Reply(status=200))
    subscription, ids = _deliveries(school, receiver.url("/back"), 6, max_concurrency=3)
    Delivery.objects.filter(pk__in=ids).update(enqueued_at=None)  # waiting behind the circuit
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    with django_capture_on_commit_callbacks():
        [attempt] = deliveries_attempt(delivery_ids=ids[:1])  # the probe answers

    assert attempt.response_status == 200
    messaged = Delivery.objects.filter(pk__in=ids[1:], enqueued_at__isnull=False)
    assert sorted(map(str, messaged.values_list("pk", flat=True))) == sorted(ids[1:4])


def test_an_answer_that_closes_the_circuit_gives_the_waiting_deliveries_every_slot(
    school, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 6, max_concurrency=3)
    claims = deliveries_claim(delivery_ids=ids).claims  # three go, three wait behind them
    Delivery.objects.filter(pk__in=ids[3:]).update(enqueued_at=None)

    with django_capture_on_commit_callbacks():
        deliveries_record(claims=claims[:2], results=[_REFUSED] * 2)  # the circuit opens
        deliveries_record(claims=claims[2:], results=[_ANSWERED])  # and the third closes it

    assert EndpointState.objects.get(pk=subscription.pk).circuit_state == CircuitState.CLOSED
    messaged = Delivery.objects.filter(pk__in=ids[3:], enqueued_at__isnull=False)
    assert messaged.count() == 3  # not one: the two that failed freed their slots too


def test_the_take_up_after_a_probe_fits_the_send_slots_this_process_has_free():
    first, second = uuid.uuid4(), uuid.uuid4()

    def claim(endpoint, waiting_behind=True):
        return SimpleNamespace(
            delivery=SimpleNamespace(subscription_id=endpoint), waiting_behind=waiting_behind
        )

    claims = [claim(first), claim(second), claim(second), claim(second, waiting_behind=False)]
    freed = {first: 8, second: 5}  # the first's probe answered: up to its concurrency

    assert _quotas_fit(freed, claims, 20) == freed
    assert _quotas_fit(freed, claims, 7) == {first: 5, second: 2}
    assert _quotas_fit(freed, claims, 3) == {first: 1, second: 2}  # its own slots at least


def test_a_failed_probe_opens_the_circuit_again_for_twice_as_long(school, settings):
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 10
    subscription, ids = _deliveries(school, f"http://127.0.0.1:{_closed_port()}/hook", 1)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        opened_count=1,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    deliveries_attempt(delivery_ids=ids)

    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.opened_count, state.consecutive_failures) == (
        CircuitState.OPEN,
        2,
        6,
    )
    assert 19 <= (state.probe_at - timezone.now()).total_seconds() <= 20


def test_error_answers_do_not_open_the_circuit(school, receiver, settings):
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    receiver.script("/broken", default=Reply(status=503))
    subscription, ids = _deliveries(school, receiver.url("/broken"), 4, max_concurrency=10)

    deliveries_attempt(delivery_ids=ids)

    assert not EndpointState.objects.filter(pk=subscription.pk).exists()  # nothing to record
    assert len(receiver.received("/broken")) == 4


def test_send_test_and_manual_sends_go_whatever_the_limits(school, receiver):
    receiver.script("/ok", default=Reply(status=200))
    subscription, ids = _deliveries(school, receiver.url("/ok"), 3, max_concurrency=1)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=9,
        opened_count=1,
        probe_at=timezone.now() + dt.timedelta(hours=1),
    )
    Delivery.objects.filter(pk__in=ids).update(next_trigger=AttemptTrigger.MANUAL)

    outcome = deliveries_claim(delivery_ids=ids)

    assert len(outcome.claims) == 3
    assert outcome.waiting == []


def test_the_api_shows_the_circuit_of_each_webhook(api, school):
    subscription = SubscriptionFactory(school=school, topics=["*"])
    opened = timezone.now() - dt.timedelta(minutes=2)
    probe = timezone.now() + dt.timedelta(seconds=30)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=opened,
        consecutive_failures=7,
        opened_count=1,
        probe_at=probe,
    )
    other = SubscriptionFactory(school=school, topics=["*"])

    listing = api.get("/api/v1/subscriptions/").json()["results"]

    by_id = {row["id"]: row["circuit"] for row in listing}
    assert by_id[str(subscription.pk)]["state"] == "open"
    assert by_id[str(subscription.pk)]["consecutive_failures"] == 7
    assert by_id[str(subscription.pk)]["next_probe_at"] is not None
    assert by_id[str(other.pk)] == {
        "state": "closed",
        "since": None,
        "consecutive_failures": 0,
        "next_probe_at": None,
    }


def test_the_webhooks_list_says_when_a_receiver_is_unreachable(client, school, school_admin):
    from tests.conftest import ADMIN_PASSWORD

    subscription = SubscriptionFactory(school=school, topics=["*"], name="Grades")
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=timezone.now(),
        consecutive_failures=5,
        opened_count=1,
        probe_at=timezone.now() + dt.timedelta(seconds=30),
    )
    client.login(username="ada", password=ADMIN_PASSWORD)

    page = client.get("/admin/subscriptions/subscription/", HTTP_ACCEPT_LANGUAGE="en")

    content = page.content.decode()
    assert "Receiver unreachable" in content
    assert "5 network failures in a row" in content
    assert Delivery.objects.filter(status=DeliveryStatus.PENDING).count() == 0


def test_an_unreachable_receivers_times_are_shown_as_times_not_as_markup(
    client, school, school_admin
):
    """The reason under "Receiver unreachable" holds two times: each is a <time> element in the
    page, in every language, never its markup written out as text."""
    from tests.conftest import ADMIN_PASSWORD

    subscription = SubscriptionFactory(school=school, topics=["*"], name="Grades")
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=timezone.now(),
        consecutive_failures=5,
        opened_count=1,
        probe_at=timezone.now() + dt.timedelta(seconds=30),
    )
    client.login(username="ada", password=ADMIN_PASSWORD)

    for language in ("en", "fr", "de"):
        listing = client.get("/admin/subscriptions/subscription/", HTTP_ACCEPT_LANGUAGE=language)
        change = client.get(
            f"/admin/subscriptions/subscription/{subscription.pk}/change/",
            HTTP_ACCEPT_LANGUAGE=language,
        )

        for page in (listing, change):
            reason = (
                page.content.decode().split('class="webhook-reason">', 1)[1].split("</span>")[0]
            )
            assert "&lt;" not in reason, (language, reason)
            assert reason.count("<time datetime=") == 2, (language, reason)


@pytest.mark.django_db(transaction=True)
def test_a_claim_does_not_undo_a_circuit_the_recorder_opened_while_it_decided(
    school, settings, monkeypatch
):
    """A claim that takes a rate token writes the webhook's state back; a circuit that results
    recorded meanwhile (in another process) opened stays open."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 5
    subscription, ids = _deliveries(
        school, "http://127.0.0.1:9/hook", 2, max_concurrency=10, rate_limit_per_second=100
    )
    EndpointState.objects.create(
        subscription=subscription,
        consecutive_failures=4,
        rate_tokens=100,
        rate_tokens_at=timezone.now(),
    )
    [in_flight] = deliveries_claim(delivery_ids=ids[:1]).claims  # its fifth failure comes next
    refused = TransportResult(
        request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
    )
    recorded = threading.Event()

    def record_elsewhere():
        try:
            record_module._circuits_update([in_flight], [refused])
            recorded.set()
        finally:
            connection.close()

    states_save = claim_module._Plan.states_save
    threads = []

    def states_save_after_a_record(plan):
        thread = threading.Thread(target=record_elsewhere)
        thread.start()
        threads.append(thread)
        recorded.wait(1)  # a recorder that waits for this claim's webhook lock waits less
        states_save(plan)

    monkeypatch.setattr(claim_module._Plan, "states_save", states_save_after_a_record)
    deliveries_claim(delivery_ids=ids[1:])  # read the circuit closed, takes a rate token
    for thread in threads:
        thread.join(10)

    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.consecutive_failures) == (CircuitState.OPEN, 5)
    assert state.probe_at is not None


@pytest.mark.django_db(transaction=True)  # the claim's lock is released at its commit
def test_a_circuit_opens_at_the_time_claims_can_see_it_not_when_the_results_came_in(
    school, settings
):
    """Another host's claim holds the webhook's lock while the results are recorded: the
    circuit's opening (and its cooldown) is timed once the recorder has the lock. A claim that
    starts after that time waits for the lock and finds the circuit open; one timed before it
    (the results' arrival) would read as claimed behind an open circuit."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 30
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 2, max_concurrency=10)
    claims = deliveries_claim(delivery_ids=ids).claims
    locked = threading.Event()
    released: list[dt.datetime] = []

    def claim_elsewhere():
        try:
            with transaction.atomic():
                endpoints_lock([subscription.pk])
                locked.set()
                time.sleep(0.5)
                released.append(db_now())
        finally:
            connection.close()

    thread = threading.Thread(target=claim_elsewhere)
    thread.start()
    assert locked.wait(10)
    deliveries_record(claims=claims, results=[_REFUSED] * 2)
    thread.join(10)

    state = EndpointState.objects.get(pk=subscription.pk)
    assert state.circuit_state == CircuitState.OPEN
    assert state.circuit_changed_at >= released[0]
    assert state.probe_at == state.circuit_changed_at + dt.timedelta(seconds=30)


def test_an_answer_closes_a_circuit_that_opened_while_its_attempt_was_in_flight(school, settings):
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3, max_concurrency=10)
    claims = deliveries_claim(delivery_ids=ids).claims  # all three in flight, circuit closed

    deliveries_record(claims=claims[:2], results=[_REFUSED] * 2)  # the circuit opens
    assert EndpointState.objects.get(pk=subscription.pk).circuit_state == CircuitState.OPEN
    deliveries_record(claims=claims[2:], results=[_ANSWERED])  # then the receiver answers

    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.consecutive_failures) == (CircuitState.CLOSED, 0)
    assert state.probe_at is None


def test_recording_answers_reads_the_circuits_in_the_statement_that_writes_them(
    school, django_assert_num_queries
):
    """The usual path: answers from a webhook whose circuit was closed and clean. Whether it
    moved meanwhile is read by the one statement that writes the results (on a raw cursor,
    which Django does not count), not by a query of its own."""
    _subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 3, max_concurrency=10)
    claims = deliveries_claim(delivery_ids=ids).claims

    with django_assert_num_queries(0):
        deliveries_record(claims=claims, results=[_ANSWERED] * 3, pull_waiting=False)

    assert Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.DELIVERED).count() == 3


def test_an_answer_ends_the_failures_in_a_row_that_began_while_its_attempt_was_in_flight(
    school, settings
):
    settings.WEBHOOKS_CIRCUIT_FAILURES = 3
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 4, max_concurrency=10)
    claims = deliveries_claim(delivery_ids=ids).claims

    deliveries_record(claims=claims[:2], results=[_REFUSED] * 2)  # two failures
    deliveries_record(claims=claims[2:3], results=[_ANSWERED])  # an answer: the row ends
    deliveries_record(claims=claims[3:], results=[_REFUSED])  # one failure

    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.consecutive_failures) == (CircuitState.CLOSED, 1)


def test_a_probe_refused_before_it_reached_the_receiver_opens_the_circuit_again(school, settings):
    """The destination is refused at connect time (it now resolves to a private address): the
    probe ends with neither an answer nor a network failure. It says nothing of the
    receiver's health, but the probe is over: the circuit opens again for the next cooldown,
    its failures uncounted, rather than staying half-open and probing again every lease."""
    settings.WEBHOOKS_ALLOWED_NETWORKS = []  # the production default: loopback is refused
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 10
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 2)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        opened_count=1,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    [attempt] = deliveries_attempt(delivery_ids=ids[:1])

    assert attempt.error_kind == ErrorKind.BLOCKED
    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.opened_count, state.consecutive_failures) == (
        CircuitState.OPEN,
        2,
        5,
    )
    assert 19 <= (state.probe_at - timezone.now()).total_seconds() <= 20
    assert deliveries_claim(delivery_ids=ids[1:]).claims == []  # no second probe before then


def test_a_manual_send_while_the_probe_is_in_flight_does_not_end_the_probe(school, settings):
    """A manual send goes whatever the circuit; refused before it reached the receiver, it is
    not the probe: the circuit stays half-open with the real probe's time, its cooldown not
    doubled while that probe is still out."""
    settings.WEBHOOKS_ALLOWED_NETWORKS = []  # loopback refused
    subscription, ids = _deliveries(school, "http://127.0.0.1:9/hook", 1)
    probe_at = timezone.now() + dt.timedelta(seconds=8)
    EndpointState.objects.create(
        subscription=subscription,
        circuit_state=CircuitState.HALF_OPEN,
        consecutive_failures=5,
        opened_count=1,
        probe_at=probe_at,
    )
    Delivery.objects.filter(pk__in=ids).update(next_trigger=AttemptTrigger.MANUAL)

    [attempt] = deliveries_attempt(delivery_ids=ids)

    assert (attempt.trigger, attempt.error_kind) == (AttemptTrigger.MANUAL, ErrorKind.BLOCKED)
    state = EndpointState.objects.get(pk=subscription.pk)
    assert (state.circuit_state, state.opened_count, state.probe_at) == (
        CircuitState.HALF_OPEN,
        1,
        probe_at,
    )
