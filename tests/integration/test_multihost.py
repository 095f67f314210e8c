"""The delivery engine run on several hosts against one PostgreSQL and one Redis, as the README's
Deploy section allows: worker processes under hostnames of their own (each a prefork pool of 2)
on one queue, real receivers on 127.0.0.1 that count the requests they hold at once. A
webhook's limits, its circuit breaker, a catch-up's order and a killed host's deliveries hold
across the hosts together, not per host."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import time

import pytest
from django.db import transaction

from deliveries.models import (
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
)
from deliveries.services import deliveries_enqueue, subscription_pause, subscription_resume
from events.services import event_publish
from tests.receiver import Receiver, Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _publish(school, count: int, *, each: bool = False) -> None:
    """``count`` events; ``each``: one transaction (and fan-out request) per event, so that
    fan-outs and their first claims land on every host, not one."""
    if each:
        for number in range(count):
            event_publish(school=school, type="course.created", data={"course": {"id": number}})
        return
    with transaction.atomic():
        for number in range(count):
            event_publish(school=school, type="course.created", data={"course": {"id": number}})


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _all_delivered(webhook, count: int, timeout: float = 60) -> None:
    deliveries = Delivery.objects.filter(subscription=webhook)
    _wait_for(
        lambda: deliveries.filter(status=DeliveryStatus.DELIVERED).count() == count,
        timeout,
        f"{count} deliveries delivered "
        f"({list(deliveries.values_list('status').order_by().distinct())})",
    )


def _attempts_by_host(workers) -> list[int]:
    """How many attempts each worker host recorded (its log has a line per attempt)."""
    return [worker.log().count("Attempt ") for worker in workers]


def test_a_webhooks_concurrency_holds_across_three_hosts(hosts, catalog, receiver):
    workers = hosts.workers(3)
    receiver.script("/two", default=Reply(delay_seconds=0.01))
    school = SchoolFactory()
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/two"), topics=["*"], max_concurrency=2
    )

    # A burst, in which fan-outs on several hosts claim at once; then waves, each published
    # once the webhook is idle, at least three and until a second host has sent some: a busy
    # webhook's slots stay in the process that holds them (handed over, taken up), so the
    # attempts of a burst may all go through one host, and Redis gives each wave's fan-out
    # message to whichever host asks first, often another one.
    _publish(school, 150, each=True)
    sent = 150
    receiver.wait_for(sent, path="/two", timeout=60)
    for wave in range(1, 11):
        _publish(school, 50, each=True)
        sent += 50
        received = receiver.wait_for(sent, path="/two", timeout=60)
        if wave >= 3 and sum(1 for count in _attempts_by_host(workers) if count) >= 2:
            break
    _all_delivered(webhook, sent)

    assert receiver.max_in_flight("/two") == 2
    assert len(received) == sent  # none sent twice
    assert sum(1 for count in _attempts_by_host(workers) if count) >= 2  # hosts shared it


def test_a_webhooks_rate_limit_holds_across_three_hosts(hosts, catalog, receiver):
    rate = 10
    workers = hosts.workers(3)
    receiver.script("/rated", default=Reply())
    school = SchoolFactory()
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/rated"), topics=["*"], rate_limit_per_second=rate
    )

    _publish(school, 25, each=True)
    _publish(school, 25)
    arrivals = [r.at for r in receiver.wait_for(50, path="/rated", timeout=30)]
    _all_delivered(webhook, 50)
    claimed = [
        at.timestamp()
        for at in DeliveryAttempt.objects.filter(delivery__subscription=webhook).values_list(
            "started_at", flat=True
        )
    ]

    # A bucket of ``rate`` tokens refilled at ``rate`` a second (the README's burst): up to
    # ``rate`` at once after an idle second, so at most twice ``rate`` in any second; once
    # that is spent, ``rate`` a second (``rate`` + 1 in a second that starts with a token).
    # At the claims, and at the receiver with a request's few milliseconds of travel.
    for times, slack in ((claimed, 0), (arrivals, 1)):
        busiest, steady = _busiest_seconds(times)
        assert busiest <= 2 * rate + slack, times
        assert steady <= rate + 1 + slack, times
    assert max(claimed) - min(claimed) >= (50 - rate) / rate - 0.1
    assert sum(1 for count in _attempts_by_host(workers) if count) >= 2


def _busiest_seconds(times: list[float]) -> tuple[int, int]:
    """The most of ``times`` in any second, and in any second a second after the first."""
    times = sorted(times)
    counts = [(at, sum(1 for other in times if at <= other < at + 1.0)) for at in times]
    steady = [count for at, count in counts if times[0] + 1.0 <= at <= times[-1] - 1.0]
    return max(count for _at, count in counts), max(steady)


# A circuit's opening is timed under the webhook's claim lock: a claim that starts after it
# waits for the lock and finds the circuit open. The margin is for the hosts' readings of the
# database's clock. Its first probe is half a second (the suite's cooldown) after it.
_RACE = dt.timedelta(seconds=0.25)


def _gaps(times: list[dt.datetime]) -> list[float]:
    return [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_receiver_gets_one_probe_at_a_time_across_hosts_and_everything_after_it(
    hosts, catalog
):
    # Retries that outlive the outage (the suite's schedule gives up after 3 s).
    long_retries = {"WEBHOOKS_RETRY_WINDOW_SECONDS": "120", "WEBHOOKS_RETRY_MAX_ATTEMPTS": "30"}
    hosts.workers(3, **long_retries)
    hosts.beat(**long_retries)  # its sweeper sends probes too, from whichever host runs it
    port = _free_port()  # nothing listens there: connection refused
    school = SchoolFactory()
    webhook = SubscriptionFactory(
        school=school, url=f"http://127.0.0.1:{port}/hook", topics=["*"], max_concurrency=4
    )

    _publish(school, 20)
    state = EndpointState.objects.filter(pk=webhook.pk)
    _wait_for(
        lambda: state.filter(circuit_state=CircuitState.OPEN).exists(), 15, "the circuit to open"
    )
    opened_at = state.get().circuit_changed_at
    time.sleep(4)  # probes at 0.5, 1 and 2 s after it opened, each refused

    # After the circuit opened, every attempt is a probe: one at a time, spaced by the
    # cooldown, never one per host.
    probes = sorted(
        DeliveryAttempt.objects.filter(
            delivery__subscription=webhook, started_at__gt=opened_at + _RACE
        ).values_list("started_at", flat=True)
    )
    assert 2 <= len(probes) <= 4, probes
    gaps = _gaps(probes)
    assert min(gaps) >= 0.4, gaps

    # The receiver comes back; the first request it gets (the next probe) takes 1.5 s: nothing
    # else goes meanwhile, then the answer closes the circuit and the rest go.
    receiver = Receiver(port=port)
    receiver.script("/hook", Reply(delay_seconds=1.5), default=Reply(delay_seconds=0.05))
    receiver.start()
    try:
        first = receiver.wait_for(1, path="/hook", timeout=15)[0]
        received = receiver.wait_for(20, path="/hook", timeout=30)
        _all_delivered(webhook, 20)
    finally:
        receiver.stop()
    assert received[1].at >= first.at + 1.5
    assert state.get().circuit_state == CircuitState.CLOSED
    assert receiver.max_in_flight("/hook") == 4  # its concurrency again once closed
    assert len({r.headers["webhook-id"] for r in received}) == 20


def test_held_deliveries_go_in_publication_order_with_two_hosts(hosts, catalog, receiver):
    hosts.workers(2)
    receiver.script("/hook", default=Reply(delay_seconds=0.02))
    school = SchoolFactory()
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"])
    subscription_pause(subscription=webhook, actor=None)
    for number in range(40):
        event_publish(school=school, type="course.created", data={"course": {"id": number}})
    held = Delivery.objects.filter(subscription=webhook)
    _wait_for(lambda: held.count() == 40, 15, "the held deliveries")

    subscription_resume(subscription=webhook, actor=None)
    # A message for every held delivery, newest first, spread over both hosts (as re-drives
    # or duplicates could be): none may overtake the oldest.
    deliveries_enqueue(list(held.order_by("-event__created_at").values_list("pk", flat=True)))
    _all_delivered(webhook, 40)

    first_attempts: list[int] = []
    for request in receiver.received("/hook"):
        number = json.loads(request.body)["data"]["course"]["id"]
        if number not in first_attempts:
            first_attempts.append(number)
    assert first_attempts == list(range(40))
    assert receiver.max_in_flight("/hook") == 1


def test_a_host_killed_mid_burst_loses_nothing(hosts, catalog, receiver):
    workers = hosts.workers(2)
    hosts.beat()
    receiver.script("/hook", default=Reply(delay_seconds=0.05))
    school = SchoolFactory()
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"])

    _publish(school, 100, each=True)
    _publish(school, 100)
    receiver.wait_for(40, path="/hook", timeout=30)
    _wait_for(lambda: sum(_attempts_by_host(workers)) > 0, 15, "a host to send")
    # The host that is sending the most dies (on a busy machine one host can take the whole
    # burst before the other takes any).
    sent = _attempts_by_host(workers)
    killed, survivor = workers if sent[0] >= sent[1] else workers[::-1]
    killed.kill()
    killed_at = time.time()
    leased = Delivery.objects.filter(
        subscription=webhook, status=DeliveryStatus.PENDING, leased_until__isnull=False
    )
    held_by_the_dead = leased.count()  # the survivor's leases too, at most its slots' worth

    sent_by_the_survivor = _attempts_by_host([survivor])[0]

    _all_delivered(webhook, 200, timeout=30)
    received = receiver.received("/hook")
    ids = [r.headers["webhook-id"] for r in received]
    assert len(set(ids)) == 200  # none lost
    # At least once: a copy only of what the dead host had in flight (sent, unrecorded).
    assert len(ids) - 200 <= held_by_the_dead
    # The survivor sent the rest; what the dead host held went again once its leases ran out
    # (10 s from their last renewal) and the sweeper (every 2 s) found them. A webhook whose
    # slots the dead host held all of waits that long: its limit counts them until then.
    # (Bounded by a margin a busy machine keeps: the point is the 10 s lease, not 90 s.)
    assert _attempts_by_host([survivor])[0] > sent_by_the_survivor
    assert max(r.at for r in received) < killed_at + 10 + 2 + 20


def test_two_beats_by_mistake_send_nothing_twice_and_break_no_limit(hosts, catalog, receiver):
    long_retries = {"WEBHOOKS_RETRY_WINDOW_SECONDS": "120", "WEBHOOKS_RETRY_MAX_ATTEMPTS": "30"}
    workers = hosts.workers(2, **long_retries)
    beats = hosts.beats(2, **long_retries)  # side by side, as two hosts' units would start
    receiver.script("/two", default=Reply(delay_seconds=0.02))
    school = SchoolFactory()
    limited = SubscriptionFactory(
        school=school, url=receiver.url("/two"), topics=["*"], max_concurrency=2
    )
    dead = SubscriptionFactory(
        school=school, url=f"http://127.0.0.1:{_free_port()}/hook", topics=["*"]
    )

    _publish(school, 60, each=True)
    _all_delivered(limited, 60)
    time.sleep(5)  # both sweepers run again and again, and probe the dead receiver

    received = receiver.received("/two")
    assert len({r.headers["webhook-id"] for r in received}) == len(received) == 60
    assert receiver.max_in_flight("/two") == 2
    state = EndpointState.objects.get(pk=dead.pk)
    assert state.circuit_state != CircuitState.CLOSED
    probes = sorted(
        DeliveryAttempt.objects.filter(
            delivery__subscription=dead, started_at__gt=state.circuit_changed_at + _RACE
        ).values_list("started_at", flat=True)
    )
    gaps = _gaps(probes)
    assert probes, "no probe"
    assert not gaps or min(gaps) >= 0.4, gaps  # one probe at a time, whoever sends it
    for process in workers + beats:
        assert "Traceback" not in process.log(), process.log()[-3000:]
    # Both beats ran the sweeper (a routine tick is logged once per process).
    assert all("deliveries.sweep" in beat.log() for beat in beats)
