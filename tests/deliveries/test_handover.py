"""Handing a finished attempt's slot to the next waiting delivery in the statement that records
it (``claim.py``, "Handing a slot over"): without the webhook's lock, and never past its
limits, with real receivers on 127.0.0.1."""

import datetime as dt
import json
from dataclasses import replace

import pytest

from common.clock import db_now
from deliveries.models import CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.services import dispatch as dispatch_module
from deliveries.services.claim import deliveries_claim
from deliveries.services.dispatch import Dispatcher
from deliveries.services.record import RecordProgress
from subscriptions.models import Subscription
from tests.deliveries.factories import deliveries_published, recorded_handing_over
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import TransportResult

pytestmark = pytest.mark.django_db

_ANSWERED = TransportResult(request_headers={}, status=200)
_ERROR_ANSWER = TransportResult(request_headers={}, status=500)


def _webhook_with_backlog(school, count, **fields):
    """A webhook of ``max_concurrency`` 2 (unless given) and ``count`` deliveries: its first two
    claimed, the rest waiting behind them; returns the webhook, the ids, and the claims."""
    webhook = SubscriptionFactory(
        school=school,
        url="http://127.0.0.1:9/hook",
        topics=["*"],
        **{"max_concurrency": 2, **fields},
    )
    ids = deliveries_published(school, count)
    outcome = deliveries_claim(delivery_ids=ids)
    assert [str(claim.delivery.pk) for claim in outcome.claims] == ids[:2]
    assert all(claim.waiting_behind for claim in outcome.claims)
    return webhook, ids, outcome.claims


def _in_flight(webhook):
    return Delivery.objects.filter(
        subscription=webhook, status=DeliveryStatus.PENDING, leased_until__gte=db_now()
    ).count()


def test_recording_answers_hands_their_slots_to_the_oldest_waiting_deliveries(school):
    webhook, ids, claims = _webhook_with_backlog(school, 5)
    # Any answer: the receiver is there.
    progress = recorded_handing_over(claims, [_ANSWERED, _ERROR_ANSWER])

    handed = progress.handed
    assert [str(claim.delivery.pk) for claim in handed] == ids[2:4]
    assert all(claim.waiting_behind for claim in handed)  # they take up after themselves
    assert [claim.number for claim in handed] == [1, 1]
    for claim in handed:
        row = Delivery.objects.get(pk=claim.delivery.pk)
        assert (row.lease_token, row.attempts) == (claim.token, 1)
        assert claim.delivery.subscription.url == webhook.url
        assert claim.delivery.body == bytes(row.body)
    assert _in_flight(webhook) == 2  # one lease ended and one began, for each slot
    assert Delivery.objects.get(pk=ids[4]).leased_until is None  # still waiting


def test_a_handover_keeps_a_concurrency_lowered_while_the_attempts_were_in_flight(school):
    webhook, ids, claims = _webhook_with_backlog(school, 5)
    Subscription.objects.filter(pk=webhook.pk).update(max_concurrency=1)
    progress = recorded_handing_over(claims, [_ANSWERED] * 2)

    assert [str(claim.delivery.pk) for claim in progress.handed] == ids[2:3]
    assert _in_flight(webhook) == 1


def test_a_handover_counts_a_manual_send_that_holds_a_slot(school):
    _webhook, ids, claims = _webhook_with_backlog(school, 5)
    # Sent now by hand and not yet taken up by a worker: it holds a slot (``redrive.py``).
    Delivery.objects.filter(pk=ids[4]).update(next_trigger="manual", enqueued_at=db_now())
    progress = recorded_handing_over(claims, [_ANSWERED] * 2)

    assert [str(claim.delivery.pk) for claim in progress.handed] == ids[2:3]


@pytest.mark.parametrize(
    "case",
    [
        "paused",
        "rate limited",
        "circuit open",
        "disabled",
        "no answer",
        "another attempt to it unanswered",
        "410",
        "nothing waited behind it",
        "lease nearly over",
        "not asked",
    ],
)
def test_no_slot_is_handed_over_where_the_locked_take_up_must_decide(school, case, settings):
    webhook, ids, claims = _webhook_with_backlog(school, 4)
    results = [_ANSWERED] * 2
    now = db_now()
    if case == "paused":
        Subscription.objects.filter(pk=webhook.pk).update(paused_at=now)
    elif case == "rate limited":
        Subscription.objects.filter(pk=webhook.pk).update(rate_limit_per_second=5)
    elif case == "circuit open":
        EndpointState.objects.create(
            subscription=webhook, circuit_state=CircuitState.OPEN, probe_at=now
        )
    elif case == "disabled":
        Subscription.objects.filter(pk=webhook.pk).update(is_active=False)
    elif case == "no answer":
        results = [
            TransportResult(request_headers={}, error_kind=ErrorKind.TIMEOUT, error_message="x")
        ] * 2
    elif case == "another attempt to it unanswered":
        results = [
            _ANSWERED,
            TransportResult(request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="x"),
        ]
    elif case == "410":
        results = [TransportResult(request_headers={}, status=410)] * 2
    elif case == "nothing waited behind it":
        claims = [replace(claim, waiting_behind=False) for claim in claims]
    elif case == "lease nearly over":
        started = now - dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS - 1)
        claims = [replace(claim, started_at=started) for claim in claims]
    progress = recorded_handing_over(claims, results, hand_over=case != "not asked")

    assert progress.handed == []
    assert not Delivery.objects.filter(pk__in=ids[2:], leased_until__isnull=False).exists()


def test_a_handover_whose_commit_answer_was_lost_is_read_back_by_its_token(school):
    _webhook, ids, claims = _webhook_with_backlog(school, 4)
    first = recorded_handing_over(claims, [_ANSWERED] * 2)
    assert len(first.handed) == 2
    # The same write tried again, as after a connection lost at its commit: it is found
    # written, and what it handed over is read back rather than left leased and unsent.
    again = RecordProgress(write_tried=True, handover_token=first.handover_token)

    recorded_handing_over(claims, [_ANSWERED] * 2, again)

    assert [claim.delivery.pk for claim in again.handed] == [c.delivery.pk for c in first.handed]
    assert [claim.token for claim in again.handed] == [claim.token for claim in first.handed]
    assert Delivery.objects.filter(pk__in=ids[:2], status=DeliveryStatus.DELIVERED).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_busy_webhook_is_served_by_handovers_within_its_concurrency_in_order(
    school, receiver, monkeypatch
):
    receiver.script("/hook", default=Reply(status=200, delay_seconds=0.02))
    SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"], max_concurrency=2)
    ids = deliveries_published(school, 12)
    take_ups = []
    locked_take_up = dispatch_module.deliveries_claim_waiting

    def counted(**kwargs):
        take_ups.append(kwargs["freed"])
        return locked_take_up(**kwargs)

    monkeypatch.setattr(dispatch_module, "deliveries_claim_waiting", counted)
    engine = Dispatcher(slots=8)
    try:
        engine.dispatch(ids)
        received = receiver.wait_for(12, path="/hook")
        assert engine.drain(timeout=20)
    finally:
        engine.stop(timeout=10)

    assert Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.DELIVERED).count() == 12
    assert receiver.max_in_flight("/hook") <= 2
    order = [json.loads(request.body)["data"]["course"]["id"] for request in received]
    # Two go at a time, so neighbours may swap; none is passed by more than one.
    assert all(abs(int(course[1:]) - index) <= 1 for index, course in enumerate(order))
    # The slots went on by handover: a locked take-up only where none was left to hand over.
    assert len(take_ups) <= 3
