"""Hosts whose clocks differ by seconds: every time one host writes and another compares is taken
from the database's clock (``common/clock.py``), so skew breaks neither a lease, a rate limit,
a retry's time nor the order of events. The machine's clock cannot be set in a test: each
"host" here is this process with Django's clock moved (``host_clock``), which is what the
engine reads of a host's clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from django.db import transaction
from django.utils import timezone

from common import clock
from common.clock import db_clock_forget, db_now
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import subscription_pause, subscription_resume
from deliveries.services.claim import deliveries_claim
from deliveries.services.fan_out import events_fan_out_waiting
from deliveries.services.record import deliveries_record
from events.models import Event
from events.services import event_publish
from tests.deliveries.factories import deliveries_published
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import TransportResult


@pytest.fixture
def host_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float], None]]:
    """``host_clock(seconds)``: from now on this process is a host whose clock is that far
    ahead of the database's (behind if negative)."""
    real_now = timezone.now
    defaults = [Event._meta.get_field("created_at"), Delivery._meta.get_field("created_at")]

    def move(seconds: float) -> None:
        def now() -> dt.datetime:
            return real_now() + dt.timedelta(seconds=seconds)

        monkeypatch.setattr(timezone, "now", now)
        for field in defaults:  # they hold the function itself (cached by the field)
            monkeypatch.setattr(field, "_get_default", now)
        db_clock_forget()  # a host measures its clock when it starts

    yield move
    monkeypatch.setattr(timezone, "now", real_now)
    db_clock_forget()


def test_db_now_is_the_databases_clock_whatever_the_hosts(db, host_clock):
    host_clock(0)
    same = db_now()
    assert clock._offset == dt.timedelta(0)  # one machine: no correction at all

    host_clock(-7.5)
    behind = db_now()
    assert timezone.now() < behind - dt.timedelta(seconds=7)
    assert abs((behind - same).total_seconds()) < 1

    host_clock(12)
    assert abs((db_now() - same).total_seconds()) < 1


@pytest.mark.django_db(transaction=True)
def test_a_host_ahead_does_not_take_a_lease_another_host_holds(school, host_clock):
    """A lease of 10 s renewed every 3.3 s has 6.7 s to 10 s left: a host 8 s ahead would see
    one renewed 3 s ago as run out, send the delivery a second time while its first attempt
    is in flight, and count nothing in flight for its webhook (concurrency 1 here)."""
    SubscriptionFactory(school=school, url="http://127.0.0.1:9/", topics=["*"], max_concurrency=1)
    first, second = deliveries_published(school, 2)
    host_clock(0)
    [claim] = deliveries_claim(delivery_ids=[first], renewed=True).claims
    Delivery.objects.filter(pk=first).update(leased_until=db_now() + dt.timedelta(seconds=7))

    host_clock(8)
    outcome = deliveries_claim(delivery_ids=[first, second], renewed=True)

    assert outcome.claims == []
    assert outcome.waiting == [second]  # its webhook's one slot is taken
    assert Delivery.objects.get(pk=first).lease_token == claim.token


@pytest.mark.django_db(transaction=True)
def test_a_rate_bucket_counted_by_a_host_behind_gives_no_second_burst(school, host_clock):
    """5 a second: a host 3 s behind takes the 5 of the full bucket; a host with the right
    time, just after, must find it empty, not refilled with the 3 s between their clocks."""
    SubscriptionFactory(
        school=school, url="http://127.0.0.1:9/", topics=["*"], rate_limit_per_second=5
    )
    host_clock(-3)
    ids = deliveries_published(school, 10)
    assert len(deliveries_claim(delivery_ids=ids[:5], renewed=True).claims) == 5
    host_clock(0)
    assert deliveries_claim(delivery_ids=ids[5:], renewed=True).claims == []


@pytest.mark.django_db(transaction=True)
def test_a_retry_is_not_due_early_when_recorded_by_a_host_behind(school, host_clock, settings):
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 2
    SubscriptionFactory(school=school, url="http://127.0.0.1:9/", topics=["*"])
    host_clock(-5)
    [delivery_id] = deliveries_published(school, 1)
    claims = deliveries_claim(delivery_ids=[delivery_id], renewed=True).claims
    refused = TransportResult(
        request_headers={}, error_kind=ErrorKind.CONNECTION, error_message="refused"
    )

    recorded_from = db_now()
    deliveries_record(claims=claims, results=[refused], pull_waiting=False)

    delivery = Delivery.objects.get(pk=delivery_id)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at >= recorded_from + dt.timedelta(seconds=1.9)


@pytest.mark.django_db(transaction=True)
def test_events_published_on_hosts_with_different_clocks_catch_up_in_publication_order(
    school, host_clock
):
    webhook = SubscriptionFactory(school=school, url="http://127.0.0.1:9/", topics=["*"])
    subscription_pause(subscription=webhook)
    host_clock(4)  # a web host 4 s ahead publishes first
    with transaction.atomic():
        event_publish(school=school, type="course.created", data={"course": {"id": "first"}})
    host_clock(0)  # then one with the right time
    with transaction.atomic():
        event_publish(school=school, type="course.created", data={"course": {"id": "second"}})
    first, _second = Event.objects.order_by("created_at")
    assert first.data["course"]["id"] == "first"

    events_fan_out_waiting()
    subscription_resume(subscription=webhook)
    ids = [str(pk) for pk in Delivery.objects.values_list("pk", flat=True)]
    [claim] = deliveries_claim(delivery_ids=ids, renewed=True).claims
    assert claim.delivery.event_id == first.pk  # the catch-up's head
