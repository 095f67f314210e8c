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
from tests.database import rows_clone
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
    subscription = SubscriptionFactory(school=school)
    ids = [delivery_create(subscription).pk for _ in range(25)]

    sent_now = deliveries_retrigger(delivery_ids=[*ids, uuid.uuid4()])

    assert sent_now.counts[RetriggerOutcome.QUEUED] == 25
    assert sum(sent_now.counts.values()) == 25  # the unknown id is no delivery at all
    assert set(Delivery.objects.values_list("status", "next_trigger")) == {
        (DeliveryStatus.PENDING, AttemptTrigger.MANUAL)
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
