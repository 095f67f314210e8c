"""Publishing through the API: one Idempotency-Key across publish-now and scheduled, numbers
the database keeps exactly, occurred_at, and datetimes without a time zone."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from events.models import Event, EventType, ScheduledEvent
from events.schedule import daily_run_latest
from events.services import daily_event_schedule, daily_events_publish_due
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db


def _in(minutes):
    return (timezone.now() + dt.timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def start_sample(catalog):
    return EventType.objects.get(key="course.started").sample_payload


# --- One Idempotency-Key, a publish-now and a scheduled publish ---------------------------


def test_a_key_used_by_a_published_event_is_a_409_when_reused_to_schedule(
    platform_api, school, start_sample
):
    body = {"school": school.slug, "type": "course.started", "data": start_sample}
    first = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 202
    assert first.json()["status"] == "published"

    other = {**body, "data": {"course": {"id": "another"}}, "deliver_at": _in(60)}
    again = platform_api.post("/api/v1/events/", other, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert again.status_code == 409
    assert list(again.json()["errors"]) == ["idempotency_key"]
    assert ScheduledEvent.objects.count() == 0


def test_a_key_used_by_a_scheduled_event_is_a_409_when_reused_to_publish_now(
    platform_api, school, start_sample
):
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": start_sample,
        "deliver_at": _in(60),
    }
    first = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.status_code == 202
    assert first.json()["status"] == "scheduled"

    now = {"school": school.slug, "type": "course.started", "data": {"course": {"id": "x"}}}
    again = platform_api.post("/api/v1/events/", now, format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert again.status_code == 409
    assert list(again.json()["errors"]) == ["idempotency_key"]
    assert Event.objects.count() == 0


def test_a_key_shaped_like_the_products_own_is_a_400_and_takes_no_days_event(platform_api, catalog):
    # Given a school on the 00:07 UTC daily event, and the key its run of today will use
    school = SchoolFactory(created_at=timezone.now() - dt.timedelta(days=3))
    today = daily_run_latest(timezone.now(), *daily_event_schedule(school=school))
    body = {"school": school.slug, "type": "course.created", "data": {"course": {"id": "c-1"}}}

    # When the platform publishes (or schedules) under keys shaped like the product's own
    answers = [
        platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        for key in (f"cron.midnight:{today.day.isoformat()}", " scheduled-event:x")
    ]
    scheduled = platform_api.post(
        "/api/v1/events/",
        {**body, "deliver_at": _in(60)},
        format="json",
        HTTP_IDEMPOTENCY_KEY="cron.midnight:2099-01-01",
    )

    # Then each is refused naming the key, nothing is stored, and the day's event still goes
    for answer in [*answers, scheduled]:
        assert answer.status_code == 400
        assert answer.json() == {
            "errors": {
                "idempotency_key": [
                    "Keys beginning with cron.midnight: or scheduled-event: are the product's "
                    "own (daily and scheduled events); use another key."
                ]
            }
        }
    assert ScheduledEvent.objects.count() == 0
    assert Event.objects.count() == 0
    [daily] = daily_events_publish_due()
    assert (daily.type_id, daily.idempotency_key) == (
        "cron.midnight",
        f"cron.midnight:{today.day.isoformat()}",
    )


# --- Naive datetimes ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["occurred_at", "deliver_at"])
def test_a_datetime_without_a_zone_is_a_400_when_publishing(platform_api, school, field):
    body = {
        "school": school.slug,
        "type": "course.created",
        "data": {"course": {"id": "c-1"}},
        field: "2030-03-26T09:00:00",
    }

    response = platform_api.post("/api/v1/events/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert Event.objects.count() == ScheduledEvent.objects.count() == 0


def test_a_due_at_without_a_zone_is_a_400_when_scheduling(platform_api, school, start_sample):
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": start_sample,
        "due_at": "2030-03-26T09:00:00",
    }

    response = platform_api.post("/api/v1/scheduled-events/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["due_at"]
    assert ScheduledEvent.objects.count() == 0


def test_a_replay_since_without_a_zone_is_a_400(api, school):
    from tests.subscriptions.factories import SubscriptionFactory

    webhook = SubscriptionFactory(school=school, topics=["course.*"])

    response = api.post(
        f"/api/v1/subscriptions/{webhook.pk}/replay/",
        {"since": "2026-01-01T00:00:00", "dry_run": True},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["since"]


# --- The same key and body, with a large number in the data ---------------------------------


@pytest.mark.parametrize("number", [1e23, 1.7976931348623157e308])
def test_the_same_key_and_body_with_a_large_float_is_replayed_not_a_409(
    platform_api, school, number
):
    body = {
        "school": school.slug,
        "type": "course.created",
        "data": {"course": {"id": "c-1", "budget": number}},
    }
    first = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-3")

    again = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-3")

    assert first.status_code == 202
    assert again.status_code == 202
    assert (again.json()["id"], again.json()["replayed"]) == (first.json()["id"], True)


def test_the_same_scheduled_event_with_a_large_float_is_returned_not_a_409(
    platform_api, school, start_sample
):
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": {**start_sample, "budget": 1e23},
        "due_at": _in(60),
        "key": "k-4",
    }
    first = platform_api.post("/api/v1/scheduled-events/", body, format="json")

    again = platform_api.post("/api/v1/scheduled-events/", body, format="json")

    assert first.status_code == 201
    assert again.status_code == 200  # a replay: nothing new was created
    assert again.json()["id"] == first.json()["id"]


# --- occurred_at ----------------------------------------------------------------------------


def test_the_same_key_with_another_occurred_at_is_a_409(platform_api, school):
    body = {
        "school": school.slug,
        "type": "course.created",
        "data": {"course": {"id": "c-1"}},
        "occurred_at": "2026-03-26T09:00:00+01:00",
    }
    first = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")

    other = {**body, "occurred_at": "2026-03-27T09:00:00+01:00"}
    again = platform_api.post("/api/v1/events/", other, format="json", HTTP_IDEMPOTENCY_KEY="k-5")

    assert first.status_code == 202
    assert again.status_code == 409
    assert list(again.json()["errors"]) == ["idempotency_key"]


def test_an_occurred_at_given_with_a_future_deliver_at_is_not_silently_dropped(
    platform_api, school, start_sample
):
    occurred_at = "2026-03-26T09:00:00+01:00"
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": start_sample,
        "occurred_at": occurred_at,
        "deliver_at": _in(60),
    }

    response = platform_api.post("/api/v1/events/", body, format="json")

    # Either refused by field, or kept: the event it becomes occurred when the client said.
    if response.status_code == 400:
        assert list(response.json()["errors"]) == ["occurred_at"]
        return
    from events.services import scheduled_events_publish_due

    scheduled_events_publish_due(now=timezone.now() + dt.timedelta(hours=2))
    event = Event.objects.get()
    assert event.occurred_at == dt.datetime.fromisoformat(occurred_at)
