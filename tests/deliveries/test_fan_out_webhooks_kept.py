"""A worker process keeps the webhooks fan-out read of each school, by the school's
``webhooks_version``, which the database changes whenever one of them changes
(``subscriptions`` migration 0011)."""

import re

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services.fan_out import events_fan_out_waiting
from events.services import event_publish
from subscriptions.models import Subscription
from subscriptions.selectors import _FAN_OUT_COLUMNS
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _version(school) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhooks_version FROM schools_school WHERE id = %s", [school.pk])
        return int(cursor.fetchone()[0])


def _fanned_out(school, course: str) -> set:
    """Publish an event and fan it out; the webhooks it got a delivery for."""
    event = event_publish(school=school, type="course.created", data={"course": {"id": course}})
    assert events_fan_out_waiting() == 1
    return set(Delivery.objects.filter(event=event).values_list("subscription_id", flat=True))


def _webhooks_reads(queries) -> int:
    """How many of the captured statements read schools' active webhooks for fan-out."""
    return sum(
        "FROM subscriptions_subscription WHERE school_id = ANY" in query["sql"]
        for query in queries.captured_queries
    )


def test_every_change_fan_out_reads_gives_the_school_a_new_version(school):
    before = _version(school)
    webhook = SubscriptionFactory(school=school, topics=["*"])
    created = _version(school)
    Subscription.objects.filter(pk=webhook.pk).update(topics=["course.*"])
    topics = _version(school)
    Subscription.objects.filter(pk=webhook.pk).update(paused_at=timezone.now())
    paused = _version(school)
    Subscription.objects.filter(pk=webhook.pk).update(is_active=False)
    inactive = _version(school)
    webhook.refresh_from_db()
    webhook.name = "Renamed"
    webhook.save()  # writes every column; none that fan-out reads changed
    Subscription.objects.filter(pk=webhook.pk).update(failing_since=timezone.now())
    untouched = _version(school)
    other = SchoolFactory()
    other_before = _version(other)
    Subscription.objects.filter(pk=webhook.pk).update(school=other)
    moved, other_moved = _version(school), _version(other)
    Subscription.objects.filter(pk=webhook.pk).delete()
    deleted = _version(other)

    versions = [before, created, topics, paused, inactive]
    assert versions == sorted(set(versions))  # a new value at each change, never one again
    assert untouched == inactive
    assert moved > untouched
    assert other_moved > other_before
    assert deleted > other_moved


def test_emptying_the_webhooks_table_gives_every_school_a_new_version(school):
    SubscriptionFactory(school=school, topics=["*"])
    before = _version(school)

    with connection.cursor() as cursor:
        # The test's transaction has deferred foreign-key checks pending, which a TRUNCATE
        # refuses to follow: run them first.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE subscriptions_subscription CASCADE")

    assert _version(school) > before


def test_the_trigger_watches_the_columns_fan_out_reads():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('subscriptions_webhooks_changed'::regproc)")
        [(definition,)] = cursor.fetchall()
    watched = set(re.findall(r"o\.(\w+) IS DISTINCT FROM n\.\1", definition))

    assert watched == {str(field.column) for field in _FAN_OUT_COLUMNS}


def test_a_statement_changing_many_webhooks_changes_each_school_once(school):
    other = SchoolFactory()
    for number in range(3):
        SubscriptionFactory(school=school, name=f"a{number}", topics=["*"])
    SubscriptionFactory(school=other, name="b", topics=["*"])
    before = _version(school), _version(other)
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM schools_webhooks_version_seq")
        [(last,)] = cursor.fetchall()

    Subscription.objects.filter(school=school).update(topics=["course.*"])

    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM schools_webhooks_version_seq")
        [(after,)] = cursor.fetchall()
    assert _version(school) > before[0]
    assert _version(other) == before[1]
    assert after == last + 1  # one new value for the school, not one per webhook


def test_a_new_connection_forgets_the_webhooks_kept(school):
    webhook = SubscriptionFactory(school=school, topics=["*"])
    assert _fanned_out(school, "c1") == {webhook.pk}

    connection_created.send(sender=type(connection), connection=connection)
    with CaptureQueriesContext(connection) as queries:
        assert _fanned_out(school, "c2") == {webhook.pk}

    assert _webhooks_reads(queries) == 1


def test_a_batch_reads_a_schools_webhooks_again_only_after_they_changed(school):
    first = SubscriptionFactory(school=school, topics=["*"])
    with CaptureQueriesContext(connection) as queries:
        assert _fanned_out(school, "c1") == {first.pk}
    assert _webhooks_reads(queries) == 1  # what the assertions below count

    with CaptureQueriesContext(connection) as queries:
        assert _fanned_out(school, "c2") == {first.pk}
    assert _webhooks_reads(queries) == 0  # kept from the first batch

    second = SubscriptionFactory(school=school, topics=["*"])
    assert _fanned_out(school, "c3") == {first.pk, second.pk}
    Subscription.objects.filter(pk=second.pk).update(is_active=False)
    assert _fanned_out(school, "c4") == {first.pk}
    Subscription.objects.filter(pk=first.pk).update(topics=["student.*"])
    assert _fanned_out(school, "c5") == set()
    Subscription.objects.filter(pk=first.pk).update(
        topics=["*"], payload_filter={"field": "course.id", "op": "eq", "value": "c7"}
    )
    assert _fanned_out(school, "c6") == set()
    assert _fanned_out(school, "c7") == {first.pk}


def test_another_schools_change_leaves_this_schools_webhooks_kept(school):
    webhook = SubscriptionFactory(school=school, topics=["*"])
    assert _fanned_out(school, "c1") == {webhook.pk}
    other = SchoolFactory()
    SubscriptionFactory(school=other, topics=["*"])

    with CaptureQueriesContext(connection) as queries:
        assert _fanned_out(school, "c2") == {webhook.pk}

    assert _webhooks_reads(queries) == 0
