import base64
import datetime as dt

import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import delivery_attempt, event_fan_out
from events.models import EventType
from events.services import event_publish
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _deliveries(school, subscription, count, type="course.created"):
    sample = EventType.objects.get(key=type).sample_payload
    ids = []
    for _ in range(count):
        event = event_publish(school=school, type=type, data=sample)
        ids += event_fan_out(event_id=event.id)
    return ids


def test_the_list_is_newest_first_paginated_by_cursor_and_only_the_schools(api, school):
    subscription = SubscriptionFactory(school=school)
    ids = _deliveries(school, subscription, 5)
    other = SchoolFactory()
    _deliveries(other, SubscriptionFactory(school=other), 2)
    Delivery.objects.filter(pk__in=ids).update(created_at=timezone.now())  # ties break by id

    first = api.get("/api/v1/deliveries/?page_size=3").json()
    second = api.get(first["next"]).json()

    listed = [d["id"] for d in first["results"] + second["results"]]
    assert sorted(listed) == sorted(str(i) for i in ids)
    assert len(set(listed)) == 5
    assert second["next"] is None
    assert set(first) == {"next", "previous", "results"}  # no count: no full-table COUNT(*)
    assert "body" not in first["results"][0]


def test_the_list_filters_by_status_webhook_type_and_time(api, school):
    crm, erp = (
        SubscriptionFactory(school=school, topics=["course.*"]),
        SubscriptionFactory(school=school, topics=["student.*"]),
    )
    course = _deliveries(school, crm, 2)
    student = _deliveries(school, erp, 1, type="student.created")
    Delivery.objects.filter(pk=course[0]).update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    Delivery.objects.filter(pk=course[1]).update(created_at=timezone.now() - dt.timedelta(days=2))

    def ids(query):
        return {d["id"] for d in api.get(f"/api/v1/deliveries/?{query}").json()["results"]}

    since = (timezone.now() - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids("status=failed") == {str(course[0])}
    assert ids(f"subscription={erp.pk}") == {str(student[0])}
    assert ids("event_type=student.created") == {str(student[0])}
    assert ids(f"created_after={since}") == {str(course[0]), str(student[0])}
    assert ids(f"created_before={since}") == {str(course[1])}


def test_an_invalid_filter_is_a_400_naming_it(api, school):
    response = api.get("/api/v1/deliveries/?status=exploded")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["status"]


@pytest.mark.parametrize("value", ["2026-01-01T09:00:00", "2026-01-01", "2026-01-01 09:00"])
@pytest.mark.parametrize("path", ["/api/v1/deliveries/", "/api/v1/deliveries/export/?format=csv"])
def test_a_date_filter_without_its_zone_is_a_400_naming_it(api, school, path, value):
    # Given a date with no UTC offset, which the server could only read in a zone of its own
    separator = "&" if "?" in path else "?"

    # When the log is filtered by it
    response = api.get(f"{path}{separator}created_after={value}")

    # Then it is refused, as the README says, instead of a guess hours off for the school
    assert response.status_code == 400
    assert response.json() == {
        "errors": {"created_after": ["The datetime has no time zone; give an aware datetime."]}
    }


def test_the_detail_shows_the_body_and_every_attempt(api, school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/r"))
    receiver.script("/r", Reply(status=500, body=b"boom"), Reply(status=200, body=b"ok"))
    [delivery_id] = _deliveries(school, subscription, 1)
    delivery_attempt(delivery_id=delivery_id)
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
    delivery_attempt(delivery_id=delivery_id)

    detail = api.get(f"/api/v1/deliveries/{delivery_id}/").json()

    assert detail["status"] == "delivered"
    assert detail["body"].startswith('{"id":')
    assert [
        (a["number"], a["response_status"], a["response_body"]) for a in detail["attempt_log"]
    ] == [
        (1, 500, "boom"),
        (2, 200, "ok"),
    ]
    assert detail["attempt_log"][0]["error_message"] == "The receiver answered 500 Reply."


def test_retrigger_re_sends_a_final_delivery_and_another_schools_is_a_404(api, school):
    subscription = SubscriptionFactory(school=school)
    [delivery_id] = _deliveries(school, subscription, 1)
    Delivery.objects.filter(pk=delivery_id).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None
    )
    other = SchoolFactory()
    [theirs] = _deliveries(other, SubscriptionFactory(school=other), 1)

    response = api.post(f"/api/v1/deliveries/{delivery_id}/retrigger/")
    again = api.post(f"/api/v1/deliveries/{delivery_id}/retrigger/")
    foreign = api.post(f"/api/v1/deliveries/{theirs}/retrigger/")

    assert (response.status_code, response.json()) == (
        202,
        {"retriggered": True, "outcome": "queued"},
    )
    assert again.json() == {"retriggered": False, "outcome": "already_queued"}
    assert foreign.status_code == 404
    assert Delivery.objects.get(pk=delivery_id).status == DeliveryStatus.PENDING
    assert api.get(f"/api/v1/deliveries/{theirs}/").status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/deliveries/", "/api/v1/events/"])
@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        base64.b64encode(b"o=x").decode(),
        base64.b64encode(b"p=garbage").decode(),
        base64.b64encode(b"p=2026-13-45 99:00:00%2B00:00").decode(),
        "\u00e9t\u00e9",
    ],
)
def test_a_cursor_the_api_did_not_give_is_a_400_naming_it(api, school, path, cursor):
    # Given a cursor tampered with, truncated or made up
    # When a list is asked for from it
    response = api.get(path, {"cursor": cursor})

    # Then the client is told its cursor is wrong, as for any other bad parameter
    assert response.status_code == 400
    assert response.json() == {
        "errors": {"cursor": ["This cursor is not one the API gave; start again without it."]}
    }


def test_a_row_deleted_between_pages_skips_none_that_share_its_time(api, school):
    # Given five deliveries written at the same instant (one fan-out's), two to a page
    ids = _deliveries(school, SubscriptionFactory(school=school), 5)
    Delivery.objects.filter(pk__in=ids).update(created_at=timezone.now())
    first = api.get("/api/v1/deliveries/?page_size=2").json()
    shown = [d["id"] for d in first["results"]]

    # When one row of the first page is pruned before the next page is read
    Delivery.objects.filter(pk=shown[0]).delete()
    rest = []
    link = first["next"]
    while link:
        page = api.get(link).json()
        rest += [d["id"] for d in page["results"]]
        link = page["next"]

    # Then every other row is still listed once
    assert sorted(shown[1:] + rest) == sorted(str(i) for i in ids if str(i) != shown[0])


def test_a_row_added_between_pages_repeats_none_that_share_a_time(api, school):
    # Given three deliveries written at the same instant, two to a page
    subscription = SubscriptionFactory(school=school)
    ids = _deliveries(school, subscription, 3)
    Delivery.objects.filter(pk__in=ids).update(created_at=timezone.now() - dt.timedelta(minutes=1))
    first = api.get("/api/v1/deliveries/?page_size=2").json()

    # When a new delivery is made before the next page is read
    _deliveries(school, subscription, 1)
    second = api.get(first["next"]).json()

    # Then the next page holds the one row not yet shown, not a row of the first page again
    listed = [d["id"] for d in first["results"] + second["results"]]
    assert sorted(listed) == sorted(str(i) for i in ids)
    assert api.get(second["previous"]).json()["results"] == first["results"]


@pytest.mark.parametrize(
    ("path", "name", "query"),
    [
        ("/api/v1/deliveries/", "status", "status=failed&status=pending"),
        ("/api/v1/events/", "school", "school=lycee-victor-hugo&school=other"),
        ("/api/v1/scheduled-events/", "status", "status=scheduled&status=cancelled"),
    ],
)
def test_a_filter_given_twice_is_a_400_naming_it(api, platform_api, school, path, name, query):
    # Given a filter repeated, which a client may mean as "either" (only one was ever used)
    client = api if path == "/api/v1/deliveries/" else platform_api

    # When a list is asked for with it
    response = client.get(f"{path}?{query}")

    # Then the client is told to give it once rather than answered for one value of the two
    assert response.status_code == 400
    assert response.json() == {"errors": {name: ["Give this parameter once."]}}
