"""Reads of the deliveries app."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from events.models import Event
from subscriptions.models import Subscription

from .models import Delivery, DeliveryAttempt, DeliveryStatus, Heartbeat


def delivery_attempts(*, delivery_id: uuid.UUID) -> QuerySet[DeliveryAttempt]:
    """The attempts of a delivery, first to last."""
    return DeliveryAttempt.objects.filter(delivery_id=delivery_id).order_by("number")


def deliveries_for_event(*, event_id: uuid.UUID) -> QuerySet[Delivery]:
    """The deliveries an event produced, with their subscriptions."""
    return (
        Delivery.objects.filter(event_id=event_id)
        .select_related("subscription")
        .defer("body")
        .order_by("created_at")
    )


def deliveries_for_school(*, school_id: int) -> QuerySet[Delivery]:
    """A school's deliveries for listing (the body is not loaded)."""
    return Delivery.objects.filter(school_id=school_id).defer("body")


def delivery_with_attempts(*, school_id: int) -> QuerySet[Delivery]:
    """A school's deliveries with their attempts, for one delivery's detail."""
    return Delivery.objects.filter(school_id=school_id).prefetch_related(
        Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
    )


def delivery_backlog(*, now: dt.datetime) -> tuple[float, int]:
    """Seconds the oldest due, unclaimed delivery has waited, and how many events await fan-out
    (an old one means workers are not consuming)."""
    oldest = (
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
            leased_until__isnull=True,
            is_test=False,
        )
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    lag = (now - oldest).total_seconds() if oldest else 0.0
    waiting = Event.objects.filter(fanned_out_at__isnull=True, created_at__lt=now).count()
    return max(lag, 0.0), waiting


@dataclass(frozen=True)
class SubscriptionDeliveryStats:
    """How a webhook's real (not test) deliveries went, for the webhooks list."""

    last_status: str | None = None
    last_response_status: int | None = None
    last_at: dt.datetime | None = None
    failures_24h: int = 0
    delivered_7d: int = 0
    failed_7d: int = 0

    @property
    def success_rate_7d(self) -> float | None:
        """Delivered / (delivered + failed) over 7 days; None without a final delivery."""
        final = self.delivered_7d + self.failed_7d
        return self.delivered_7d / final if final else None


def subscriptions_delivery_stats(
    *, subscription_ids: list[uuid.UUID], now: dt.datetime | None = None
) -> dict[uuid.UUID, SubscriptionDeliveryStats]:
    """For each webhook: its newest delivery (status, answer, time of the last attempt), its
    failures in the last 24 hours (deliveries that failed, or whose last attempt failed and
    that are being retried) and its delivered/failed counts over 7 days.

    Two queries for any number of webhooks (a list page's rows), on the (subscription,
    created_at) index. Send Test deliveries are left out. Webhooks without deliveries get
    empty stats.
    """
    if not subscription_ids:
        return {}
    now = now or timezone.now()
    day_ago, week_ago = now - dt.timedelta(days=1), now - dt.timedelta(days=7)
    failing = Q(status=DeliveryStatus.FAILED) | (
        Q(status=DeliveryStatus.PENDING) & ~Q(last_error_kind="")
    )
    counts = {
        row["subscription_id"]: row
        for row in Delivery.objects.filter(
            subscription_id__in=subscription_ids, is_test=False, created_at__gte=week_ago
        )
        .order_by()
        .values("subscription_id")
        .annotate(
            delivered=Count("pk", filter=Q(status=DeliveryStatus.DELIVERED)),
            failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
            failures_24h=Count("pk", filter=failing & Q(created_at__gte=day_ago)),
        )
    }
    newest = Delivery.objects.filter(subscription_id=OuterRef("pk"), is_test=False).order_by(
        "-created_at"
    )
    latest = Subscription.objects.filter(pk__in=subscription_ids).values_list(
        "pk",
        Subquery(newest.values("status")[:1]),
        Subquery(newest.values("last_response_status")[:1]),
        Subquery(newest.values("last_attempt_at")[:1]),
        Subquery(newest.values("created_at")[:1]),
    )
    stats = {}
    for pk, status, response_status, last_attempt_at, created_at in latest:
        row: dict[str, Any] = dict(counts.get(pk, {}))
        stats[pk] = SubscriptionDeliveryStats(
            last_status=status,
            last_response_status=response_status,
            last_at=last_attempt_at or created_at,
            failures_24h=row.get("failures_24h", 0),
            delivered_7d=row.get("delivered", 0),
            failed_7d=row.get("failed", 0),
        )
    return stats


def deliveries_failed_count(*, subscription_id: uuid.UUID, since: dt.datetime) -> int:
    """How many of the webhook's deliveries created since ``since`` failed (what recover would
    re-send)."""
    return Delivery.objects.filter(
        subscription_id=subscription_id,
        status=DeliveryStatus.FAILED,
        is_test=False,
        created_at__gte=since,
    ).count()


# Backlog counts stop at this many rows: past it the number says "at least", and a scrape
# stays cheap however far behind the workers are.
BACKLOG_COUNT_CAP = 100_000


@dataclass(frozen=True)
class Backlog:
    """Rows waiting for a worker: how many (up to ``BACKLOG_COUNT_CAP``) and the oldest's time."""

    count: int
    oldest: dt.datetime | None


@dataclass(frozen=True)
class SchoolFailures:
    """A school's active webhooks in a failure streak, and when the oldest streak began."""

    school: str
    failing: int
    failing_since: dt.datetime


@dataclass(frozen=True)
class OperationsState:
    """What /metrics reports about the deployment as a whole, read from the database."""

    due: Backlog
    awaiting_fan_out: Backlog
    webhooks: dict[str, int]
    failing_by_school: list[SchoolFailures]
    heartbeats: dict[str, dt.datetime]


def operations_state(*, now: dt.datetime) -> OperationsState:
    """The deployment's state for /metrics, in seven small queries (the backlogs walk their
    partial indexes; the webhook counts read the webhooks table, a few thousand rows).

    - ``due``: pending deliveries (Send Tests aside) due at ``now`` that no worker holds (never
      claimed, or whose lease ran out), on the partial index of due deliveries.
    - ``awaiting_fan_out``: events not yet turned into deliveries, on their partial index.
    - ``webhooks``: webhooks by state: ``healthy`` (active, no failure streak), ``failing``
      (active, in a streak) and ``disabled``.
    - ``failing_by_school``: per school with a failing webhook, how many and the oldest
      streak's start, longest streak first.
    - ``heartbeats``: every heartbeat row (beat, sweeper, ``worker:<hostname>``).
    """
    due = Delivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=now, is_test=False
    ).filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
    awaiting = Event.objects.filter(fanned_out_at__isnull=True)
    webhooks = Subscription.objects.aggregate(
        healthy=Count("pk", filter=Q(is_active=True, failing_since__isnull=True)),
        failing=Count("pk", filter=Q(is_active=True, failing_since__isnull=False)),
        disabled=Count("pk", filter=Q(is_active=False)),
    )
    failing = (
        Subscription.objects.filter(is_active=True, failing_since__isnull=False)
        .order_by()
        .values("school__slug")
        .annotate(failing=Count("pk"), since=Min("failing_since"))
        .order_by("since", "school__slug")
    )
    return OperationsState(
        due=_backlog(due.order_by("next_attempt_at"), "next_attempt_at"),
        awaiting_fan_out=_backlog(awaiting.order_by("created_at"), "created_at"),
        webhooks=webhooks,
        failing_by_school=[
            SchoolFailures(
                school=row["school__slug"], failing=row["failing"], failing_since=row["since"]
            )
            for row in failing
        ],
        heartbeats=dict(Heartbeat.objects.values_list("name", "seen_at")),
    )


def _backlog(queryset: QuerySet[Any], field: str) -> Backlog:
    oldest = queryset.values_list(field, flat=True).first()
    if oldest is None:
        return Backlog(count=0, oldest=None)
    return Backlog(count=queryset.values("pk")[:BACKLOG_COUNT_CAP].count(), oldest=oldest)
