"""After its receiver lost its data, a school admin replays a webhook's recent events in a real
browser (the count first), then finds a course's deliveries by payload and exports them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from deliveries.models import Delivery, DeliveryStatus
from events.models import Event
from events.services import event_publish
from tests.e2e.conftest import log_in
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _wait_delivered(queryset, count, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queryset.filter(status=DeliveryStatus.DELIVERED).count() == count:
            return
        time.sleep(0.05)
    raise AssertionError("deliveries not delivered")


def test_a_school_admin_replays_recent_events_then_exports_a_courses_deliveries(
    live_server, page, worker_process, receiver, school, school_admin, tmp_path
):
    webhook = SubscriptionFactory(
        school=school, name="Moodle", url=receiver.url("/moodle"), topics=["course.*"]
    )
    events = []
    for course in ("c-41", "c-42", "c-43"):
        with transaction.atomic():
            events.append(
                event_publish(
                    school=school,
                    type="course.created",
                    data={"course": {"id": course, "name": "Maths"}},
                )
            )
    _wait_delivered(Delivery.objects.filter(subscription=webhook), 3)
    Event.objects.filter(pk=events[0].pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    since = timezone.localtime(timezone.now() - dt.timedelta(days=1), school.tzinfo)

    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/{webhook.pk}/change/")
    page.get_by_role("link", name="Replay events").click()
    page.get_by_label("Published since").fill(since.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Count the events").click()
    expect(page.get_by_role("status")).to_have_text("2 events will be sent again.")
    page.get_by_role("button", name="Replay 2 events").click()

    expect(page.locator(".messagelist")).to_contain_text(
        "2 events are being sent again to the webhook, each as a new delivery."
    )
    receiver.wait_for(5, path="/moodle")
    replayed = Delivery.objects.filter(subscription=webhook, replay_number=1)
    assert {d.event_id for d in replayed} == {events[1].pk, events[2].pk}
    _wait_delivered(replayed, 2)

    page.goto(f"{live_server.url}/admin/deliveries/delivery/")
    page.get_by_label("Words or values").fill("c-42")
    page.get_by_label("Words or values").press("Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / "export.csv"
    download.value.save_as(path)

    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert sorted((row["event_id"], row["replay_number"], row["state"]) for row in rows) == [
        (str(events[1].pk), "0", "delivered"),
        (str(events[1].pk), "1", "delivered"),
    ]
    assert {row["webhook_name"] for row in rows} == {"Moodle"}
