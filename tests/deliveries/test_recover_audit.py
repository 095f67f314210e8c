""" "Recover failed deliveries" is one action on a webhook: the audit trail says it once, with
how many deliveries went, not once more per delivery (thousands of entries after an outage)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from deliveries.models import Delivery, DeliveryStatus
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
