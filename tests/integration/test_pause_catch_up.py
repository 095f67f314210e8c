"""Pause and catch-up end to end: a real worker process over Redis, a real receiver recording
the order requests arrive in."""

import json
import time

import pytest
from django.db import transaction

from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import deliveries_enqueue, subscription_pause, subscription_resume
from events.services import event_publish
from subscriptions.models import Subscription
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_pause_publish_50_events_resume_and_all_50_arrive_in_order(
    worker_process, catalog, receiver
):
    # A receiver that takes a little while: with several requests in flight at once (the
    # webhook's default concurrency) later ones would overtake earlier ones.
    receiver.script("/hook", default=Reply(status=200, delay_seconds=0.02))
    school = SchoolFactory()
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/hook"), topics=["*"], rate_limit_per_second=200
    )
    subscription_pause(subscription=webhook, actor=None)

    for number in range(50):
        with transaction.atomic():
            event_publish(
                school=school, type="course.created", data={"course": {"id": f"c{number:02}"}}
            )
    held = Delivery.objects.filter(subscription=webhook)
    _wait_for(lambda: held.count() == 50)  # fanned out by the worker, and held
    time.sleep(0.5)
    assert receiver.received("/hook") == []
    assert set(held.values_list("status", flat=True)) == {DeliveryStatus.PENDING}

    subscription_resume(subscription=webhook, actor=None)
    # A message for every held delivery, newest first, as a sweeper's re-drive or duplicated
    # messages could send: none may overtake the oldest.
    deliveries_enqueue(list(held.order_by("-event__created_at").values_list("pk", flat=True)))

    _wait_for(lambda: held.filter(status=DeliveryStatus.DELIVERED).count() == 50)
    arrived = [json.loads(r.body)["data"]["course"]["id"] for r in receiver.received("/hook")]
    assert arrived == [f"c{number:02}" for number in range(50)]
    webhook.refresh_from_db()
    assert webhook.paused_at is None
    # Nothing waits any more: the next claim or the sweeper ends the catch-up.
    _wait_for(lambda: _catch_up_over(webhook), timeout=15.0)


def _catch_up_over(webhook):
    from deliveries.services.pausing import catch_ups_drive

    catch_ups_drive()
    return Subscription.objects.get(pk=webhook.pk).catching_up_since is None
