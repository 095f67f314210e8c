""" "Recover failed deliveries" is one action on a webhook: the audit trail says it once, with
how many deliveries went, not once more per delivery (thousands of entries after an outage)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from deliveries.models import AttemptTrigger, Delivery, DeliveryStatus
from deliveries.services import redrive
from deliveries.services.redrive import (
    RetriggerOutcome,
    deliveries_recover,
    deliveries_retrigger,
)
from tests.database import rows_clone, rows_fetched
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_support_staff_recovering_a_webhook_leaves_one_audit_entry(client, school, support_user):
    subscription = SubscriptionFactory(school=school)
    failed = [delivery_create(subscription) for _ in range(3)]
    client.force_login(support_user)
    since = timezone.now() - dt.timedelta(days=1)

    done = client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/recover/",
        {"since": since.strftime("%Y-%m-%dT%H:%M")},
        follow=True,
    )

    [message] = [str(m) for m in done.context["messages"]]
    assert message.startswith("3 failed deliveries since ")
    assert set(
        Delivery.objects.filter(pk__in=[d.pk for d in failed]).values_list("status", flat=True)
    ) == {DeliveryStatus.PENDING}
    entries = list(AuditEntry.objects.values_list("action", "object_id", "changes"))
    assert entries == [
        (
            AuditAction.DELIVERIES_RECOVERED,
            str(subscription.pk),
            {"since": since.replace(second=0, microsecond=0).isoformat(), "deliveries": 3},
        )
    ]


def test_a_webhook_with_more_failed_deliveries_than_a_statement_takes_parameters_recovers_them(
    school,
):
    # Given a webhook whose receiver was down long enough for 70,001 deliveries to fail (more
    # than PostgreSQL's 65,535 parameters of one statement), faster than the table's statistics
    # followed: they still say it holds one delivery
    subscription = SubscriptionFactory(school=school)
    first = delivery_create(subscription)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
    rows_clone(
        Delivery,
        first.pk,
        70_000,
        {"id": "gen_random_uuid()", "replay_number": "n"},  # replays of its event
    )

    # When they are recovered (a plan made for one row would take hours: stopped after 2 min)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '120s'")
    try:
        recovered = deliveries_recover(
            subscription=subscription, since=timezone.now() - dt.timedelta(days=1)
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")

    # Then every one of them goes again, as the webhook's limits allow
    assert recovered == 70_001
    assert set(Delivery.objects.values_list("status", "next_trigger", "enqueued_at")) == {
        (DeliveryStatus.PENDING, AttemptTrigger.RECOVERY, None)
    }


def test_sending_now_a_selection_larger_than_a_statement_takes_goes_in_pieces(school, monkeypatch):
    monkeypatch.setattr(redrive, "_PIECE", 10)
    subscription = SubscriptionFactory(school=school, max_concurrency=22)
    ids = [delivery_create(subscription).pk for _ in range(25)]

    sent_now = deliveries_retrigger(delivery_ids=[*ids, uuid.uuid4()])

    assert sent_now.counts[RetriggerOutcome.QUEUED] == 25
    assert sum(sent_now.counts.values()) == 25  # the unknown id is no delivery at all
    # 22 at once (in three pieces), the 3 beyond the webhook's concurrency in turn
    assert set(
        Delivery.objects.filter(next_trigger=AttemptTrigger.MANUAL).values_list("pk", flat=True)
    ) == set(ids[:22])
    assert set(Delivery.objects.values_list("status", "next_trigger")) == {
        (DeliveryStatus.PENDING, AttemptTrigger.MANUAL),
        (DeliveryStatus.PENDING, AttemptTrigger.RECOVERY),
    }
    assert AuditEntry.objects.filter(action=AuditAction.DELIVERY_RETRIGGERED).count() == 25


def test_the_embedded_databases_recovery_leaves_the_same_rows_as_postgresqls(school):
    subscription = SubscriptionFactory(school=school)
    failed = [delivery_create(subscription) for _ in range(3)]
    since, now = timezone.now() - dt.timedelta(days=1), timezone.now()

    ids = redrive._recover_elsewhere(subscription, since=since, now=now)

    assert ids == [delivery.pk for delivery in failed]  # oldest first
    rows = list(
        Delivery.objects.order_by("next_attempt_at").values_list(
            "pk", "status", "next_trigger", "enqueued_at"
        )
    )
    assert rows == [
        (delivery.pk, DeliveryStatus.PENDING, AttemptTrigger.RECOVERY, None) for delivery in failed
    ]


def test_the_embedded_databases_send_now_in_turn_leaves_the_same_rows_as_postgresqls(school):
    subscription = SubscriptionFactory(school=school)
    due = timezone.now() + dt.timedelta(hours=1)

    def selection() -> list[Delivery]:
        made = [
            delivery_create(subscription),
            delivery_create(subscription, status=DeliveryStatus.PENDING, next_attempt_at=due),
            delivery_create(subscription, status=DeliveryStatus.DELIVERED),
        ]
        return list(Delivery.objects.filter(pk__in=[row.pk for row in made]).order_by("created_at"))

    def state(rows: list[Delivery]) -> list[tuple]:
        by_pk = {row.pk: row for row in Delivery.objects.filter(pk__in=[row.pk for row in rows])}
        return [
            (
                by_pk[row.pk].status,
                by_pk[row.pk].next_trigger,
                by_pk[row.pk].next_attempt_at,
                by_pk[row.pk].resume_attempt_at,
                by_pk[row.pk].enqueued_at,
            )
            for row in rows
        ]

    now = timezone.now()
    on_postgresql, elsewhere = selection(), selection()
    redrive._later_wait(on_postgresql, now=now)
    redrive._later_wait_elsewhere(elsewhere, [3, 2, 1], now=now)

    assert state(on_postgresql) == state(elsewhere)
    assert [row[2] for row in state(elsewhere)] == [
        now - dt.timedelta(microseconds=place) for place in (3, 2, 1)
    ]  # due just before now, oldest first
    assert [row[3] for row in state(elsewhere)] == [None, due, None]  # a schedule is kept


def test_a_large_selection_sent_now_is_made_to_wait_in_one_pass_whatever_the_statistics(school):
    # Given 5,000 failed deliveries of a webhook and 5,000 of another, more than the table's
    # statistics say it holds
    subscription = SubscriptionFactory(school=school, max_concurrency=1)
    first = delivery_create(subscription)
    other = delivery_create(SubscriptionFactory(school=school))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
    rows_clone(Delivery, first.pk, 4_999, {"id": "gen_random_uuid()", "replay_number": "n"})
    rows_clone(Delivery, other.pk, 4_999, {"id": "gen_random_uuid()", "replay_number": "n"})
    later = list(Delivery.objects.filter(subscription=subscription).order_by("created_at", "id"))

    # When they are made to wait in turn
    with rows_fetched(Delivery) as fetched:
        redrive._later_wait(later, now=timezone.now())

    # Then rows are read about once each, not once for every other one; the other webhook's
    # deliveries are left as they were
    assert fetched.count <= 3 * Delivery.objects.count()
    assert Delivery.objects.filter(next_trigger=AttemptTrigger.RECOVERY).count() == 5_000
