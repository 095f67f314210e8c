"""End to end with a real worker process and a real receiver: a replay since a time re-sends
exactly the events since then, and a school admin's export of the filtered log holds only that
school's rows."""

import csv
import datetime as dt
import io
import json
import time

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import deliveries_replay, events_replay_count, replay_plan
from events.models import Event, EventType
from events.services import event_publish
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _publish(school, course_id, type="course.created"):
    data = {"course": {"id": course_id, "name": "Maths"}}
    if type != "course.created":
        data = EventType.objects.get(key=type).sample_payload
    with transaction.atomic():
        return event_publish(school=school, type=type, data=data)


def _wait_final(queryset, count, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(queryset.all())
        if len(rows) == count and all(r.status != DeliveryStatus.PENDING for r in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"Deliveries not final: {[(d.id, d.status) for d in queryset.all()]}")


def _wait_fanned_out(event, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Event.objects.filter(pk=event.pk, fanned_out_at__isnull=False).exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"Event {event.pk} was not fanned out")


def test_a_replay_since_a_time_resends_exactly_the_events_since_then(
    worker_process, school, receiver
):
    # Published before the webhook existed: never sent to it.
    before_webhook = _publish(school, "c-0")
    _wait_fanned_out(before_webhook)
    webhook = SubscriptionFactory(school=school, url=receiver.url("/lost"), topics=["course.*"])
    receiver.script("/lost", Reply(status=500), default=Reply(status=200))
    old = _publish(school, "c-1")
    failed_first = _publish(school, None, type="course.updated")
    delivered = _publish(school, "c-3")
    _publish(school, None, type="student.signed")  # a type the webhook does not receive
    _wait_final(Delivery.objects.filter(subscription=webhook), 3)
    two_hours_ago = timezone.now() - dt.timedelta(hours=2)
    Event.objects.filter(pk=old.pk).update(created_at=two_hours_ago)
    Event.objects.filter(pk=before_webhook.pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=30)
    )
    sent_before = len(receiver.received("/lost"))

    plan = replay_plan(subscription=webhook, since=timezone.now() - dt.timedelta(hours=1))
    count = events_replay_count(plan=plan)
    result = deliveries_replay(plan=plan, actor=None)

    expected = {str(before_webhook.pk), str(failed_first.pk), str(delivered.pk)}
    assert count == 3
    assert result.queued == 3
    replayed = _wait_final(Delivery.objects.filter(pk__in=result.delivery_ids), 3)
    assert {d.status for d in replayed} == {DeliveryStatus.DELIVERED}
    requests = receiver.wait_for(sent_before + 3, path="/lost")[sent_before:]
    time.sleep(0.3)  # nothing more arrives
    assert len(receiver.received("/lost")) == sent_before + 3
    bodies = [Webhook(webhook.secret).verify(r.body, r.headers) for r in requests]
    assert {body["id"] for body in bodies} == expected
    # New deliveries: new webhook-ids, each replay linked to its event.
    assert {r.headers["webhook-id"] for r in requests} == {f"msg_{d.pk.hex}" for d in replayed}
    assert {(str(d.event_id), d.replay_number) for d in replayed} == {
        (event_id, 1) for event_id in expected
    }


def test_a_school_admins_export_of_the_filtered_log_holds_only_that_schools_rows(
    worker_process, school, other_school, school_admin, receiver, client
):
    mine = SubscriptionFactory(school=school, name="Ours", url=receiver.url("/ours"))
    theirs = SubscriptionFactory(school=other_school, name="Theirs", url=receiver.url("/theirs"))
    # The 410 answers the last of the three requests: a delivery claimed after it was recorded
    # would fail too (its webhook disabled), and the failed list would depend on timing.
    receiver.script("/ours", Reply(status=200), Reply(status=200), Reply(status=410))
    receiver.script("/theirs", default=Reply(status=410))
    for number in range(2):
        _publish(school, f"c-4{number}")
        _publish(other_school, f"c-4{number}")
    _publish(school, "c-99")
    _wait_final(Delivery.objects.filter(subscription=mine), 3)
    _wait_final(Delivery.objects.filter(subscription=theirs), 2)

    client.force_login(school_admin)
    response = client.get("/admin/deliveries/delivery/export/csv/?payload=c-40 or c-41")
    as_json = client.get("/admin/deliveries/delivery/export/json/?status=failed")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    ours = Delivery.objects.filter(subscription=mine, event__data__course__id__in=["c-40", "c-41"])
    assert {row["id"] for row in rows} == {str(d.pk) for d in ours}
    assert {row["school"] for row in rows} == {school.slug}
    assert {row["webhook_name"] for row in rows} == {"Ours"}
    failed = json.loads(b"".join(as_json.streaming_content))
    assert [row["webhook_name"] for row in failed] == ["Ours"]
    assert failed[0]["last_response_status"] == 410
