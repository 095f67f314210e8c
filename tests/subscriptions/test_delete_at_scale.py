"""Deleting a webhook with a large delivery log: all of it in one go, no row read, any size."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditAction, AuditEntry
from deliveries.models import Delivery, DeliveryAttempt, EndpointState
from subscriptions.models import SigningSecret, Subscription
from subscriptions.services import DATABASE_CASCADES
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _deliveries_add(subscription, count):
    """``count`` more deliveries of one event to ``subscription`` (replays 1, 2, ...), each with
    an attempt, made by PostgreSQL in two statements."""
    first = delivery_create(subscription)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO deliveries_delivery
                (id, school_id, event_id, subscription_id, event_type, is_test, body,
                 content_type, profile, status, attempts, next_trigger, created_at,
                 last_error_kind, last_error, replay_number)
            SELECT gen_random_uuid(), d.school_id, d.event_id, d.subscription_id, d.event_type,
                   false, d.body, d.content_type, d.profile, 'delivered', 1, 'automatic',
                   d.created_at, '', '', g
            FROM deliveries_delivery AS d, generate_series(1, %s) AS g
            WHERE d.id = %s
            """,
            [count, first.pk],
        )
        cursor.execute(
            """
            INSERT INTO deliveries_deliveryattempt
                (delivery_id, number, trigger, started_at, duration_ms, request_url,
                 request_headers, response_headers, response_body, response_body_truncated,
                 error_kind, error_message)
            SELECT d.id, 1, 'automatic', d.created_at, 10, 'https://receiver.example/h',
                   '{}', '{}', 'ok', false, '', ''
            FROM deliveries_delivery AS d WHERE d.subscription_id = %s AND d.replay_number > 0
            """,
            [subscription.pk],
        )


def test_a_webhook_with_more_deliveries_than_a_statement_can_name_is_deleted(api, school):
    """Django's delete read every delivery with its body, then named them all in the attempts'
    DELETE: past 65,535 PostgreSQL refuses it ("number of parameters must be between 0 and
    65535"), a 500, and the webhook could never be deleted."""
    subscription = SubscriptionFactory(school=school)
    EndpointState.objects.create(subscription=subscription, consecutive_failures=2)
    other = SubscriptionFactory(school=school)
    kept = delivery_create(other)
    _deliveries_add(subscription, 66_000)

    with CaptureQueriesContext(connection) as queries:
        response = api.delete(f"/api/v1/subscriptions/{subscription.pk}/")

    assert response.status_code == 204
    assert not Subscription.objects.filter(pk=subscription.pk).exists()
    assert not SigningSecret.objects.filter(subscription_id=subscription.pk).exists()
    assert not EndpointState.objects.exists()
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]
    assert DeliveryAttempt.objects.count() == 1
    assert AuditEntry.objects.filter(
        action=AuditAction.WEBHOOK_DELETED, object_id=str(subscription.pk)
    ).exists()
    assert not [query for query in queries.captured_queries if '"body"' in query["sql"]]


def test_everything_that_refers_to_a_webhook_goes_with_it():
    """``subscription_delete`` deletes signing secrets itself and leaves the rest to the
    database's cascades: a new model that refers to webhooks must be added to one or the other,
    else deleting a webhook that has one fails at commit."""
    related = {
        (relation.related_model._meta.app_label, relation.related_model.__name__)
        for relation in Subscription._meta.get_fields(include_hidden=True)
        if relation.auto_created and not relation.concrete
    }

    assert related == DATABASE_CASCADES | {("subscriptions", "SigningSecret")}
