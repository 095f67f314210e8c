import json

import pytest

from deliveries.models import Delivery
from events.models import Event
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

EVENT = {"school": "lycee-victor-hugo", "type": "course.created", "data": {"course": {"id": "c-1"}}}


def test_the_catalog_lists_types_and_shows_samples_and_schemas(api, catalog):
    listed = api.get("/api/v1/event-types/?page_size=200").json()
    detail = api.get("/api/v1/event-types/course.created/").json()

    assert "course.created" in [t["key"] for t in listed["results"]]
    assert detail["key"] == "course.created"
    assert set(detail) == {
        "key",
        "group",
        "description",
        "version",
        "deprecated",
        "sample_payload",
        "json_schema",
    }
    assert api.get("/api/v1/event-types/no.such/").status_code == 404


def test_the_platform_publishes_and_the_event_is_fanned_out(
    platform_api, school, django_capture_on_commit_callbacks
):
    SubscriptionFactory(school=school, topics=["course.*"])

    with django_capture_on_commit_callbacks(execute=False) as handoffs:
        response = platform_api.post("/api/v1/events/", EVENT, format="json")

    assert response.status_code == 202
    body = response.json()
    event = Event.objects.get(pk=body["id"])
    assert body == {
        "id": str(event.id),
        "status": "published",
        "school": school.slug,
        "type": "course.created",
        "deliver_at": None,
        "replayed": False,
    }
    assert event.data == {"course": {"id": "c-1"}}
    assert len(handoffs) == 1


def test_a_schools_key_cannot_publish(api, school):
    response = api.post("/api/v1/events/", EVENT, format="json")

    assert response.status_code == 403
    assert response.json() == {"detail": "Publishing events needs the platform's key."}
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "status", "errors"),
    [
        (
            {"type": "course.exploded"},
            400,
            {"type": ["Unknown event type 'course.exploded': it is not in the event catalog."]},
        ),
        (
            {"data": "not an object"},
            400,
            {"data": ['Expected a dictionary of items but got type "str".']},
        ),
        (
            {"occurred_at": "yesterday"},
            400,
            {
                "occurred_at": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
    ],
)
def test_invalid_events_are_refused_by_field(platform_api, school, change, status, errors):
    response = platform_api.post("/api/v1/events/", {**EVENT, **change}, format="json")

    assert response.status_code == status
    assert response.json() == {"errors": errors}
    assert Event.objects.count() == 0


def test_an_unknown_school_is_a_404(platform_api, catalog):
    response = platform_api.post("/api/v1/events/", {**EVENT, "school": "nowhere"}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "No school with the slug 'nowhere'."}


def test_the_same_idempotency_key_and_body_returns_the_first_event_and_fans_out_once(
    platform_api, school, django_capture_on_commit_callbacks
):
    SubscriptionFactory(school=school, topics=["*"])

    with django_capture_on_commit_callbacks(execute=True):
        first = platform_api.post(
            "/api/v1/events/", EVENT, format="json", HTTP_IDEMPOTENCY_KEY="course-1-created"
        )
        again = platform_api.post(
            "/api/v1/events/", EVENT, format="json", HTTP_IDEMPOTENCY_KEY="course-1-created"
        )

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    assert Event.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_409(platform_api, school):
    platform_api.post("/api/v1/events/", EVENT, format="json", HTTP_IDEMPOTENCY_KEY="k")

    response = platform_api.post(
        "/api/v1/events/",
        {**EVENT, "data": {"course": {"id": "other"}}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )

    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["idempotency_key"]
    assert Event.objects.count() == 1


def test_an_oversized_request_is_a_413_stating_the_limit(platform_api, school, settings):
    settings.WEBHOOKS_INGEST_MAX_BYTES = 1000

    response = platform_api.post(
        "/api/v1/events/", {**EVENT, "data": {"blob": "x" * 2000}}, format="json"
    )

    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1000 bytes."}
    assert Event.objects.count() == 0


def test_schools_list_their_own_events_with_the_deliveries_they_produced(api, platform_api, school):
    SubscriptionFactory(school=school, topics=["*"])
    mine = platform_api.post("/api/v1/events/", EVENT, format="json").json()["id"]
    other = SchoolFactory(slug="other-school")
    platform_api.post("/api/v1/events/", {**EVENT, "school": other.slug}, format="json")
    from deliveries.services import event_fan_out

    event_fan_out(event_id=mine)

    listed = api.get("/api/v1/events/").json()["results"]
    detail = api.get(f"/api/v1/events/{mine}/").json()
    everything = platform_api.get("/api/v1/events/").json()["results"]
    theirs = platform_api.get(f"/api/v1/events/?school={other.slug}").json()["results"]

    assert [e["id"] for e in listed] == [mine]
    assert [d["id"] for d in detail["deliveries"]] == [
        str(d) for d in Delivery.objects.values_list("pk", flat=True)
    ]
    assert len(everything) == 2
    assert [e["school"] for e in theirs] == ["other-school"]


def test_unknown_api_paths_answer_json(api):
    response = api.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert json.loads(response.content) == {"detail": "Not found."}


def test_a_key_given_twice_in_one_object_is_a_400_naming_it(platform_api, school, other_school):
    """JSON parsers disagree on which of two equal keys wins (Python's takes the last, others
    the first): whatever checked the body on the way, the event must not go to a school or
    carry data other than the one it saw. Refused, with the key named; nothing is stored."""
    body = (
        f'{{"school": "{school.slug}", "type": "course.created", "school": "{other_school.slug}", '
        '"data": {"course": {"id": "c1", "id": "c2"}}}'
    )

    response = platform_api.post("/api/v1/events/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "errors": {
            "__all__": [
                "The key id appears twice in one JSON object; give it once.",
                "The key school appears twice in one JSON object; give it once.",
            ]
        }
    }
    assert Event.objects.count() == 0


def test_data_failing_the_types_schema_is_a_400_naming_each_path(platform_api, school):
    response = platform_api.post(
        "/api/v1/events/",
        {**EVENT, "data": {"course": {"name": 42}}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "errors": {
            "data": [
                "data.course.id: 'id' is a required property",
                "data.course.name: 42 is not of type 'string'",
            ]
        }
    }
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/events/", {**EVENT, "type": 1}, "type"),
        ("/api/v1/events/", {**EVENT, "school": 123}, "school"),
        (
            "/api/v1/scheduled-events/",
            {**EVENT, "type": "course.created", "due_at": "2099-01-01T00:00:00Z", "key": 4711},
            "key",
        ),
    ],
)
def test_a_number_given_for_a_text_is_refused_naming_its_field(
    platform_api, school, path, body, field
):
    SchoolFactory(slug="123")

    response = platform_api.post(path, body, format="json")

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == [field]
    assert Event.objects.count() == 0


def test_an_event_with_a_field_the_api_does_not_know_is_a_400_naming_it(platform_api, school):
    response = platform_api.post(
        "/api/v1/events/", {**EVENT, "ocurred_at": "2026-03-26T07:00:00Z"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"ocurred_at": ["Unknown field."]}
