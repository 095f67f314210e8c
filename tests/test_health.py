import datetime as dt

import pytest
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services import event_fan_out
from events.services import event_publish
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_health_is_ok_when_the_database_and_the_broker_answer(client, catalog):
    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "oldest_due_delivery_seconds": 0.0,
        "events_awaiting_fan_out": 0,
        "broker": "ok",
        "status": "ok",
    }


def test_health_is_503_when_due_deliveries_are_not_picked_up(client, school, settings):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    SubscriptionFactory(school=school)
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    Delivery.objects.filter(pk=delivery_id).update(
        next_attempt_at=timezone.now() - dt.timedelta(minutes=10)
    )

    response = client.get("/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["deliveries"] == "due deliveries are not being picked up: are workers running?"
    assert body["oldest_due_delivery_seconds"] >= 600
