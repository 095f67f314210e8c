"""The API under retries and races: a scheduled publish retried once due, a delivery deleted
mid-request, a secret header given back masked, a filter given empty."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from deliveries import views as deliveries_views
from deliveries.models import Delivery
from deliveries.services import event_fan_out
from events.models import Event, EventType, ScheduledEvent
from events.services import event_publish, scheduled_events_publish_due
from subscriptions.models import SECRET_MASK, Subscription
from subscriptions.services import subscription_create

pytestmark = pytest.mark.django_db


# --- An Idempotency-Key retry of a scheduled publish, once it is due -------------------------


def test_retrying_a_scheduled_publish_after_its_time_does_not_publish_the_event_twice(
    platform_api, school
):
    # Given an event published with deliver_at a moment away, under an Idempotency-Key
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": EventType.objects.get(key="course.started").sample_payload,
        "deliver_at": (timezone.now() + dt.timedelta(seconds=1)).isoformat(),
    }
    first = platform_api.post(
        "/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="course-4711-start"
    )
    assert first.status_code == 202
    assert first.json()["status"] == "scheduled"

    # When its time has come (the scheduler publishes it) and the client retries the very same
    # request (its first answer was lost), with the same key and body
    time.sleep(1.2)
    scheduled_events_publish_due()
    again = platform_api.post(
        "/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="course-4711-start"
    )

    # Then the retry answers the first one (replayed), and receivers get the event once
    assert again.status_code == 202
    assert again.json()["replayed"] is True
    assert again.json()["id"] == first.json()["id"]
    assert Event.objects.filter(school=school, type_id="course.started").count() == 1


# --- Retrigger of a delivery deleted since it was looked up -----------------------------------


def test_retrigger_of_a_delivery_deleted_since_it_was_looked_up_is_a_404(
    api, school, resolver, monkeypatch
):
    # Given a delivery whose webhook another request deletes right after this one looked the
    # delivery up (its delivery log goes with it)
    subscription = subscription_create(
        school=school, name="CRM", url="http://127.0.0.1:9/hook", topics=["*"]
    )
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    real = deliveries_views.delivery_retrigger

    def deleted_first(**kwargs):
        Subscription.objects.filter(pk=subscription.pk).delete()
        return real(**kwargs)

    monkeypatch.setattr(deliveries_views, "delivery_retrigger", deleted_first)

    # When this request retriggers it
    response = api.post(f"/api/v1/deliveries/{delivery_id}/retrigger/")

    # Then it is not found (as every action on a webhook deleted meanwhile answers), not a 202
    # saying that a worker is sending it right now
    assert not Delivery.objects.filter(pk=delivery_id).exists()
    assert response.status_code == 404, response.json()
    assert response.json() == {"detail": "Not found."}


# --- A secret header kept with the mask --------------------------------------------------------


def test_a_secret_header_kept_with_the_mask_is_never_returned_nor_stored_in_clear(api, school):
    # Given a webhook with a header marked secret
    created = api.post(
        "/api/v1/subscriptions/",
        {
            "name": "CRM",
            "url": "http://127.0.0.1:9/hooks",
            "topics": ["*"],
            "custom_headers": {"X-Tenant": "lycee", "X-Pin": "pin-2"},
            "secret_headers": ["X-Pin"],
        },
        format="json",
    ).json()
    shown = api.get(f"/api/v1/subscriptions/{created['id']}/").json()
    assert shown["custom_headers"] == {"X-Tenant": "lycee", "X-Pin": SECRET_MASK}

    # When the client replaces the webhook with what it read, keeping the header's value with
    # the mask, without listing secret_headers (a PUT gives every setting it changes)
    replaced = api.put(
        f"/api/v1/subscriptions/{created['id']}/",
        {key: shown[key] for key in ("name", "url", "topics", "custom_headers")},
        format="json",
    )

    # Then the stored secret value is neither returned nor stored in clear
    assert replaced.status_code == 200
    assert "pin-2" not in replaced.content.decode()
    assert replaced.json()["custom_headers"]["X-Pin"] == SECRET_MASK
    subscription = Subscription.objects.get(pk=created["id"])
    assert "pin-2" not in str(subscription.custom_headers)
    assert "pin-2" not in api.get(f"/api/v1/subscriptions/{created['id']}/").content.decode()


# --- A filter given empty on events and scheduled events ---------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/scheduled-events/", "key"),
        ("/api/v1/scheduled-events/", "school"),
        ("/api/v1/events/", "school"),
    ],
)
def test_a_filter_given_empty_is_a_400_on_events_and_scheduled_events(
    platform_api, school, path, parameter
):
    # Given scheduled events and events of a school
    ScheduledEvent.objects.create(
        school=school,
        type_id="course.started",
        data=EventType.objects.get(key="course.started").sample_payload,
        due_at=timezone.now() + dt.timedelta(days=1),
        key="course-start",
    )
    event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})

    # When a filter is given with no value
    response = platform_api.get(path, {parameter: ""})

    # Then it is refused by name, as the README says ("a filter given empty") and the delivery
    # log does
    assert response.status_code == 400, response.json()
    assert response.json() == {"errors": {parameter: ["Give a value, or leave the parameter out."]}}
