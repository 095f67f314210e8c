"""Handing a slot over when the record's statement is delayed, its answer lost, or the
webhook's waiting deliveries are not plain automatic ones (``claim.py``, "Handing a slot over")."""

import datetime as dt
import threading
import time
import uuid

import psycopg
import pytest
from django.db import OperationalError, connection

from common.clock import db_now
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import claim as claim_module
from deliveries.services import record as record_module
from deliveries.services.claim import deliveries_claim, deliveries_claim_waiting
from deliveries.services.record import (
    RecordProgress,
    deliveries_record,
    receivers_gone_disable,
)
from deliveries.services.redrive import deliveries_sweep
from subscriptions.models import Subscription
from tests.deliveries.factories import deliveries_published, recorded_handing_over
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.transport import TransportResult

pytestmark = pytest.mark.django_db

_ANSWERED = TransportResult(request_headers={}, status=200)


def _webhook(school, count, concurrency, renewed=False):
    webhook = SubscriptionFactory(
        school=school, url="http://127.0.0.1:9/hook", topics=["*"], max_concurrency=concurrency
    )
    ids = deliveries_published(school, count)
    claims = deliveries_claim(delivery_ids=ids, renewed=renewed).claims
    assert [str(c.delivery.pk) for c in claims] == ids[:concurrency]
    assert all(c.waiting_behind for c in claims)
    return webhook, ids, claims


def _in_flight(webhook):
    return Delivery.objects.filter(
        subscription=webhook, status=DeliveryStatus.PENDING, leased_until__gte=db_now()
    ).count()


def _answer_lost(monkeypatch):
    """The record's statement commits, then the connection goes (its answer lost)."""
    real = record_module._results_write_statement

    def lost(*args, **kwargs):
        real(*args, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(record_module, "_results_write_statement", lost)
    return lambda: monkeypatch.setattr(record_module, "_results_write_statement", real)


# A 410 in the same batch: the webhook is disabled right after the record, so the slot of the
# other (answered) attempt is not handed over: its claim would go with a request to a receiver
# that said Gone, where the locked take-up, after the disable, refuses it without one.
def test_no_handover_when_another_attempt_of_the_batch_got_410(school):
    webhook, _ids, claims = _webhook(school, 4, 2)
    results = [_ANSWERED, TransportResult(request_headers={}, status=410)]
    claim_module._cache.clear()  # the process's copy of the webhook was read again meanwhile
    progress = RecordProgress()
    deliveries_record(
        claims=claims, results=results, pull_waiting=False, progress=progress, hand_over=True
    )
    receivers_gone_disable(claims, results)
    assert not Subscription.objects.get(pk=webhook.pk).is_active
    # The handed claim is sent with a request (send.py checks subscription.is_active).
    assert [c.delivery.pk for c in progress.handed if c.delivery.subscription.is_active] == []


# The commit's answer lost, and another attempt of the batch no longer ours (its lease ran out
# and another worker holds it): the retry finds only some results written, and what the write
# handed over is read back and sent all the same.
def test_lost_answer_reads_back_handover_when_another_attempt_lost_its_lease(school, monkeypatch):
    _hook, ids, claims = _webhook(school, 4, 2)
    Delivery.objects.filter(pk=ids[1]).update(
        lease_token=uuid.uuid4(), leased_until=db_now() + dt.timedelta(seconds=10)
    )
    progress = RecordProgress()
    restore = _answer_lost(monkeypatch)
    with pytest.raises(OperationalError):
        recorded_handing_over(claims, [_ANSWERED] * 2, progress)
    restore()
    handed = Delivery.objects.filter(lease_token__isnull=False, pk__in=ids[2:])
    assert [str(d.pk) for d in handed] == ids[2:3]  # the write committed and handed ids[2]
    recorded_handing_over(claims, [_ANSWERED] * 2, progress)
    assert [str(c.delivery.pk) for c in progress.handed] == ids[2:3]


# Read back after a lost answer, a handed lease is renewed from then: a claim made of it starts
# then, so the guard on its own lease (when it is recorded in turn) holds, and a slot a locked
# claim refilled meanwhile is not handed over a second time.
def test_a_read_back_handover_keeps_its_lease_start(school, monkeypatch):
    webhook, ids, claims = _webhook(school, 4, 1)
    progress = RecordProgress()
    restore = _answer_lost(monkeypatch)
    with pytest.raises(OperationalError):
        recorded_handing_over(claims, [_ANSWERED], progress)
    restore()
    # The database was unreachable for ~9 s: the handed lease (ids[1]) has ~0.8 s left.
    shift = dt.timedelta(seconds=9.2)
    Delivery.objects.filter(pk=ids[1]).update(
        leased_until=db_now() + dt.timedelta(seconds=0.8),
        last_attempt_at=db_now() - shift,
    )
    recorded_handing_over(claims, [_ANSWERED], progress)
    [w] = progress.handed
    assert str(w.delivery.pk) == ids[1]
    time.sleep(1.0)  # its lease ran out (not renewed in time)
    # A message for ids[2] is claimed under the lock: it goes if nothing is counted in flight.
    deliveries_claim(delivery_ids=[ids[2]], renewed=True)
    # ids[1]'s answer comes in: its slot must not be handed over, it was refilled.
    later = RecordProgress()
    deliveries_record(
        claims=[w], results=[_ANSWERED], pull_waiting=False, progress=later, hand_over=True
    )
    assert _in_flight(webhook) <= 1, [str(c.delivery.pk) for c in later.handed]


# The handover takes the oldest waiting delivery as the locked take-up does, whatever its
# trigger (a recovery, "send now" in turn), and one whose lease ran out (a worker died):
# otherwise every handover would pass it over, and the sweeper does not re-drive it while
# anything is in flight.
@pytest.mark.parametrize("kind", ["recovery", "lease ran out"])
def test_a_handover_takes_the_oldest_waiting_delivery(school, kind):
    _hook, ids, claims = _webhook(school, 5, 2)
    if kind == "recovery":
        Delivery.objects.filter(pk=ids[2]).update(next_trigger="recovery")
    else:
        Delivery.objects.filter(pk=ids[2]).update(
            leased_until=db_now() - dt.timedelta(seconds=1), lease_token=uuid.uuid4(), attempts=1
        )
    progress = RecordProgress()
    recorded_handing_over(claims, [_ANSWERED] * 2, progress)
    handed = [str(c.delivery.pk) for c in progress.handed]
    deliveries_sweep()
    still_waiting = Delivery.objects.get(pk=ids[2])
    assert still_waiting.enqueued_at is None  # not re-driven: attempts are in flight
    assert ids[2] in handed, handed


# The record's ``now`` is read before the statement runs, and the statement may wait for row
# locks: another transaction holding the in-flight delivery's row (as a large "send now"
# selection does while it renders and audits), or the webhook's row, which the failure streak's
# update needs (an edit, a pause, a disable). If the attempt's lease runs out meanwhile, a
# locked claim may refill the slot: the handover must not hand the same slot over again. The
# streak's update runs before the handover reads the clock, so it hands nothing over.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("row", ["the delivery's", "the webhook's"])
def test_a_handover_delayed_past_its_lease_does_not_exceed_the_limit(school, settings, row):
    settings.WEBHOOKS_LEASE_SECONDS = 4.0  # the guard: claims younger than 2 s
    webhook, ids, claims = _webhook(school, 4, 1, renewed=True)
    if row == "the delivery's":
        locked = ("deliveries_delivery", ids[0])
    else:
        Subscription.objects.filter(pk=webhook.pk).update(failing_since=db_now())  # a streak
        locked = ("subscriptions_subscription", webhook.pk)
    dsn = connection.settings_dict
    blocker = psycopg.connect(
        host=dsn["HOST"], port=dsn["PORT"] or 5432, user=dsn["USER"], dbname=dsn["NAME"]
    )
    blocker.execute(f"SELECT 1 FROM {locked[0]} WHERE id = %s FOR UPDATE", [locked[1]])  # noqa: S608 - a table name of the test's own
    progress = RecordProgress()
    errors = []

    def record():
        try:
            recorded_handing_over(claims, [_ANSWERED], progress)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    time.sleep(1.7)  # the attempt takes 1.7 s: its lease has 2.3 s left, the guard lets it hand
    thread = threading.Thread(target=record)
    thread.start()
    try:
        time.sleep(2.8)  # the record's statement waits for the row; the lease of ids[0] runs out
        outcome = deliveries_claim(delivery_ids=[ids[2]], renewed=True)
        assert [str(c.delivery.pk) for c in outcome.claims] == ids[2:3]
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(10)
    assert not errors
    assert progress.handed == []
    assert _in_flight(webhook) <= 1


def test_the_locked_take_up_takes_a_recovery_delivery_in_its_turn(school):
    """The locked take-up takes the oldest waiting delivery, a recovery one too (what the
    handover matches)."""
    webhook, ids, claims = _webhook(school, 5, 2)
    Delivery.objects.filter(pk=ids[2]).update(next_trigger="recovery")
    deliveries_record(claims=claims, results=[_ANSWERED] * 2, pull_waiting=False)
    taken = deliveries_claim_waiting(freed={webhook.pk: 2}).claims
    assert sorted(str(c.delivery.pk) for c in taken) == sorted(ids[2:4])
