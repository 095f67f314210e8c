"""Deleting a school from the admin at any size: the confirmation page counts what goes instead
of listing it, and the delete names no row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from deliveries.models import Delivery, EndpointState
from events.models import Event, ScheduledEvent, ScheduledEventStatus
from schools.models import School
from subscriptions.models import SigningSecret, Subscription
from tests.deliveries.factories import delivery_create, event_create
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _events_add(school, count):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events_event (id, school_id, type, data, occurred_at, created_at,
                                      fanned_out_at, is_test)
            SELECT gen_random_uuid(), %s, 'course.created',
                   jsonb_build_object('course', jsonb_build_object('id', 'c-' || g)),
                   now(), now(), now(), false
            FROM generate_series(1, %s) AS g
            """,
            [school.pk, count],
        )


def test_a_school_with_more_events_than_a_statement_can_name_is_deleted(admin_client, school):
    """The stock page and delete read every event with its data, then named them all in one
    statement: past 65,535 PostgreSQL refuses it, a 500 on the confirmation page already."""
    other = SchoolFactory(slug="other")
    kept = delivery_create(SubscriptionFactory(school=other))
    webhook = SubscriptionFactory(school=school)
    EndpointState.objects.create(subscription=webhook)
    published = event_create(school)
    ScheduledEvent.objects.create(
        school=other,  # another school's scheduled event made into this one's event: kept
        type_id="course.created",
        data={},
        due_at=published.created_at,
        status=ScheduledEventStatus.PUBLISHED,
        published_at=published.created_at,
        event=published,
    )
    _events_add(school, 66_000)
    url = f"/admin/schools/school/{school.pk}/delete/"

    with CaptureQueriesContext(connection) as queries:
        confirmation = admin_client.get(url)
    response = admin_client.post(url, {"post": "yes"})

    assert confirmation.status_code == 200
    assert dict(confirmation.context["model_count"]) == {
        "schools": 1,
        "events": 66_001,
        "webhooks": 1,
    }
    assert confirmation.context["deleted_objects"] == [str(school)]
    assert not confirmation.context["perms_lacking"]
    assert len(queries) < 30
    assert response.status_code == 302
    assert not School.objects.filter(pk=school.pk).exists()
    assert not Event.objects.filter(school_id=school.pk).exists()
    assert not Subscription.objects.filter(school_id=school.pk).exists()
    assert not SigningSecret.objects.filter(subscription_id=webhook.pk).exists()
    assert not EndpointState.objects.exists()
    assert ScheduledEvent.objects.get().event_id is None
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Event.objects.filter(school=other).exists()


def test_a_school_with_a_delivery_log_is_refused_without_reading_it(admin_client, school):
    """Nobody deletes deliveries or audit entries in the admin, so a school that has some cannot
    be deleted there either (as before): the page says so after counting, not reading, them."""
    webhook = SubscriptionFactory(school=school)
    for _ in range(3):
        delivery_create(webhook)
    AuditEntry.objects.create(school=school, action="webhook_created", object_type="webhook")
    url = f"/admin/schools/school/{school.pk}/delete/"

    with CaptureQueriesContext(connection) as queries:
        confirmation = admin_client.get(url)
    refused = admin_client.post(url, {"post": "yes"})

    assert confirmation.context["deleted_objects"] == [str(school)]
    assert confirmation.context["perms_lacking"] == {"delivery", "audit entry"}
    assert dict(confirmation.context["model_count"])["deliveries"] == 3
    assert not [query for query in queries.captured_queries if '"body"' in query["sql"]]
    assert refused.status_code == 403
    assert School.objects.filter(pk=school.pk).exists()
    assert Delivery.objects.count() == 3
