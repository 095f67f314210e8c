"""The webhooks list's figures: last delivery, failures in 24 h, success over 7 days."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus
from deliveries.selectors import SubscriptionDeliveryStats, subscriptions_delivery_stats
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def _age(delivery, **delta):
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - dt.timedelta(**delta)
    )


def test_figures_count_real_deliveries_in_their_windows(school, django_assert_num_queries):
    busy = SubscriptionFactory(school=school)
    quiet = SubscriptionFactory(school=school)
    for _ in range(3):
        delivery_create(busy, status=DeliveryStatus.DELIVERED)
    _age(delivery_create(busy), days=2)  # failed, in the week but not the day
    delivery_create(  # retrying after a failure: a failure of the day, not final
        busy, status=DeliveryStatus.PENDING, last_error_kind=ErrorKind.TIMEOUT
    )
    _age(delivery_create(busy), days=8)  # too old for either
    delivery_create(busy, is_test=True)  # Send Test never counts
    newest = delivery_create(busy, status=DeliveryStatus.DELIVERED, last_response_status=204)

    with django_assert_num_queries(3):
        stats = subscriptions_delivery_stats(subscription_ids=[busy.pk, quiet.pk])

    assert stats[busy.pk].failures_24h == 1
    assert stats[busy.pk].in_progress_7d == 1
    assert (stats[busy.pk].delivered_7d, stats[busy.pk].failed_7d) == (4, 1)
    assert stats[busy.pk].success_rate_7d == 0.8
    assert (stats[busy.pk].last_status, stats[busy.pk].last_response_status) == (
        DeliveryStatus.DELIVERED,
        204,
    )
    assert stats[busy.pk].last_at == newest.last_attempt_at
    assert stats[quiet.pk] == SubscriptionDeliveryStats()
    assert stats[quiet.pk].success_rate_7d is None
    assert subscriptions_delivery_stats(subscription_ids=[]) == {}


def test_a_delivery_that_recovered_still_counts_as_a_failure_of_the_day(school):
    from deliveries.models import AttemptTrigger, DeliveryAttempt

    webhook = SubscriptionFactory(school=school)
    recovered = delivery_create(webhook)  # attempt 1 failed with a 500
    DeliveryAttempt.objects.create(
        delivery=recovered,
        number=2,
        trigger=AttemptTrigger.AUTOMATIC,
        started_at=timezone.now(),
        request_url=webhook.url,
        response_status=200,
    )
    Delivery.objects.filter(pk=recovered.pk).update(
        status=DeliveryStatus.DELIVERED, attempts=2, last_error_kind="", last_response_status=200
    )
    delivery_create(webhook, status=DeliveryStatus.DELIVERED)  # never failed

    stats = subscriptions_delivery_stats(subscription_ids=[webhook.pk])

    assert (stats[webhook.pk].failures_24h, stats[webhook.pk].recovered_24h) == (1, 1)
    assert (stats[webhook.pk].delivered_7d, stats[webhook.pk].failed_7d) == (2, 0)
