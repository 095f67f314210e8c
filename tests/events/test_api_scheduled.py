import datetime as dt

import pytest
from django.utils import timezone

from events.models import Event, EventType, ScheduledEvent, ScheduledEventStatus
from events.services import scheduled_events_publish_due
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def start_sample(catalog):
    return EventType.objects.get(key="course.started").sample_payload


def _in(minutes):
    return (timezone.now() + dt.timedelta(minutes=minutes)).isoformat()


def test_deliver_at_in_the_future_schedules_the_event_under_the_idempotency_key(
    platform_api, school, start_sample
):
    response = platform_api.post(
        "/api/v1/events/",
        {
            "school": school.slug,
            "type": "course.started",
            "data": start_sample,
            "deliver_at": _in(60),
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="course-4711-start",
    )

    body = response.json()
    scheduled = ScheduledEvent.objects.get()
    assert response.status_code == 202
    assert (body["status"], body["id"], body["replayed"]) == ("scheduled", str(scheduled.pk), False)
    assert scheduled.key == "course-4711-start"
    assert scheduled.status == ScheduledEventStatus.SCHEDULED
    assert Event.objects.count() == 0


def test_deliver_at_in_the_past_publishes_now(platform_api, school, start_sample):
    response = platform_api.post(
        "/api/v1/events/",
        {
            "school": school.slug,
            "type": "course.started",
            "data": start_sample,
            "deliver_at": _in(-5),
        },
        format="json",
    )

    assert response.json()["status"] == "published"
    assert Event.objects.filter(pk=response.json()["id"]).exists()
    assert ScheduledEvent.objects.count() == 0


def test_a_deliver_at_already_past_is_when_the_event_occurred_as_when_scheduled(
    platform_api, school, start_sample
):
    # Given a course that started an hour ago, told to us late (a queue, a clock behind)
    started = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
    body = {"school": school.slug, "type": "course.started", "data": start_sample}

    # When the platform publishes it with that start as deliver_at, and again under a key
    answers = [
        platform_api.post(
            "/api/v1/events/",
            {**body, "deliver_at": started.isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )
        for key in ("c-1-start", "c-1-start", "c-2-start")
    ]

    # Then it is published now and occurred at its deliver_at, as a scheduled one would have
    assert [answer.json()["status"] for answer in answers] == ["published"] * 3
    assert [answer.json()["replayed"] for answer in answers] == [False, True, False]
    events = Event.objects.order_by("created_at")
    assert [event.occurred_at for event in events] == [started, started]
    assert ScheduledEvent.objects.count() == 0


def test_the_platform_schedules_moves_and_cancels_by_key(platform_api, school, start_sample):
    created = platform_api.post(
        "/api/v1/scheduled-events/",
        {
            "school": school.slug,
            "type": "course.started",
            "data": start_sample,
            "due_at": _in(60),
            "key": "course-4711-start",
        },
        format="json",
    )
    [found] = platform_api.get("/api/v1/scheduled-events/?key=course-4711-start").json()["results"]
    moved = platform_api.patch(
        f"/api/v1/scheduled-events/{found['id']}/", {"due_at": _in(120)}, format="json"
    )
    cancelled = platform_api.delete(f"/api/v1/scheduled-events/{found['id']}/")
    scheduled_events_publish_due(now=timezone.now() + dt.timedelta(hours=3))

    assert created.status_code == 201
    assert found["id"] == created.json()["id"]
    assert moved.status_code == 200
    assert dt.datetime.fromisoformat(moved.json()["due_at"]) > timezone.now() + dt.timedelta(
        minutes=110
    )
    assert cancelled.json()["status"] == "cancelled"
    assert Event.objects.count() == 0  # never published


def test_moving_a_published_event_is_a_409(platform_api, school, start_sample):
    created = platform_api.post(
        "/api/v1/scheduled-events/",
        {"school": school.slug, "type": "course.started", "data": start_sample, "due_at": _in(1)},
        format="json",
    ).json()
    scheduled_events_publish_due(now=timezone.now() + dt.timedelta(minutes=2))

    response = platform_api.patch(
        f"/api/v1/scheduled-events/{created['id']}/", {"due_at": _in(60)}, format="json"
    )

    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["status"]


def test_invalid_data_is_refused_when_scheduling_not_when_due(platform_api, school, catalog):
    response = platform_api.post(
        "/api/v1/scheduled-events/",
        {"school": school.slug, "type": "course.started", "data": {}, "due_at": _in(60)},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["data"]
    assert ScheduledEvent.objects.count() == 0


def test_schools_read_their_own_scheduled_events_and_cannot_schedule(
    api, platform_api, school, start_sample
):
    mine = platform_api.post(
        "/api/v1/scheduled-events/",
        {"school": school.slug, "type": "course.started", "data": start_sample, "due_at": _in(60)},
        format="json",
    ).json()
    other = SchoolFactory(slug="elsewhere")
    theirs = platform_api.post(
        "/api/v1/scheduled-events/",
        {"school": other.slug, "type": "course.started", "data": start_sample, "due_at": _in(60)},
        format="json",
    ).json()

    listed = api.get("/api/v1/scheduled-events/").json()["results"]
    forbidden = api.post(
        "/api/v1/scheduled-events/",
        {"school": school.slug, "type": "course.started", "data": start_sample, "due_at": _in(5)},
        format="json",
    )

    assert [row["id"] for row in listed] == [mine["id"]]
    assert api.get(f"/api/v1/scheduled-events/{theirs['id']}/").status_code == 404
    assert forbidden.status_code == 403
    assert api.delete(f"/api/v1/scheduled-events/{mine['id']}/").status_code == 403


def test_scheduling_again_under_the_same_key_answers_200_with_the_first(
    platform_api, school, start_sample
):
    # Given an event scheduled under a key
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": start_sample,
        "due_at": _in(60),
        "key": "course-4711-start",
    }
    first = platform_api.post("/api/v1/scheduled-events/", body, format="json")

    # When the platform retries the same request (a timeout on its side)
    again = platform_api.post("/api/v1/scheduled-events/", body, format="json")

    # Then nothing new is created, and the answer says so: 200 with the first one, not a 201
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert ScheduledEvent.objects.count() == 1


def test_the_idempotency_key_header_is_the_scheduled_events_key_when_the_body_has_none(
    platform_api, school, start_sample
):
    """A client that sends Idempotency-Key on every POST (as /events/ asks) and retries a
    scheduling after a timeout must not get the event scheduled twice."""
    body = {"school": school.slug, "type": "course.started", "data": start_sample}
    body["due_at"] = _in(60)

    answers = [
        platform_api.post(
            "/api/v1/scheduled-events/", body, format="json", HTTP_IDEMPOTENCY_KEY="c-9-start"
        )
        for _ in range(2)
    ]
    other = platform_api.post(
        "/api/v1/scheduled-events/",
        {**body, "key": "c-9-end"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="c-9-start",
    )

    assert [answer.status_code for answer in answers] == [201, 200]
    assert ScheduledEvent.objects.get().key == "c-9-start"
    assert other.status_code == 400
    assert other.json() == {
        "errors": {
            "key": [
                "The key differs from the Idempotency-Key header; give one of them, or the "
                "same in both."
            ]
        }
    }
    assert ScheduledEvent.objects.count() == 1


@pytest.mark.parametrize("then", ["cancelled", "published"])
def test_retrying_a_scheduled_publish_answers_the_scheduled_events_status_now(
    platform_api, school, start_sample, then
):
    # Given an event scheduled through POST /events/ under a key, since cancelled or published
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": start_sample,
        "deliver_at": _in(1),
    }
    first = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="c-9")
    if then == "cancelled":
        platform_api.delete(f"/api/v1/scheduled-events/{first.json()['id']}/")
    else:
        scheduled_events_publish_due(now=timezone.now() + dt.timedelta(minutes=2))

    # When the platform retries the request
    again = platform_api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="c-9")

    # Then the answer is the same scheduled event, with what became of it
    assert (first.json()["status"], first.json()["replayed"]) == ("scheduled", False)
    assert again.status_code == 202
    assert (again.json()["id"], again.json()["status"], again.json()["replayed"]) == (
        first.json()["id"],
        then,
        True,
    )
    assert Event.objects.count() == (1 if then == "published" else 0)


def test_scheduled_events_due_together_are_each_listed_once_across_pages(api, school, start_sample):
    # Given scheduled events due at the same instant and written at the same instant
    from events.services import scheduled_event_create

    due = timezone.now() + dt.timedelta(days=1)
    ids = {
        str(
            scheduled_event_create(
                school=school, type="course.started", data=start_sample, due_at=due, key=f"k{n}"
            ).pk
        )
        for n in range(40)
    }
    ScheduledEvent.objects.update(due_at=due, created_at=timezone.now())

    # When the school reads the list page by page
    listed = []
    for page in range(1, 7):
        body = api.get(f"/api/v1/scheduled-events/?page_size=7&page={page}").json()
        listed += [item["id"] for item in body["results"]]

    # Then each is listed once: the order does not change from one page to the next
    assert sorted(listed) == sorted(ids)


@pytest.mark.parametrize("method", ["head", "options"])
def test_scheduled_events_answer_head_and_options_as_every_other_list(api, school, method):
    # Given the school's scheduled events, which it reads with GET
    # When a client (a proxy, a browser's preflight, a health probe) asks with HEAD or OPTIONS
    response = getattr(api, method)("/api/v1/scheduled-events/")

    # Then it is answered as for the other lists, not refused as a method the list lacks
    assert response.status_code == 200
