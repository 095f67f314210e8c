"""Reads of the deliveries app."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.db import connection
from django.db.models import Avg, Count, Max, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import TruncHour
from django.utils import timezone

from common.sql import plans_in_index_order
from events.models import Event, EventType
from events.search import events_payload_matching
from subscriptions.models import Subscription
from subscriptions.topics import topic_matches

from .models import (
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    Heartbeat,
)


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


def deliveries_not_taken(*, now: dt.datetime) -> Backlog:
    """Deliveries sent to the workers that no worker has taken: due, with a message out
    (``enqueued_at``) and no live lease, Send Tests aside. The queue, and the work of workers
    that died or take messages without sending (a failing deploy). How many (up to
    ``BACKLOG_COUNT_CAP``) and the oldest's due time, which the sweeper's sending them again
    does not reset. Read on ``delivery_messaged_idx``, in one statement on PostgreSQL.

    Deliveries that wait by design have no message and are not among them: for their
    webhook's concurrency or rate, for its circuit breaker's probe, for its school's pause or
    one at a time in a catch-up (the attempts in flight, the probe, the resume or the sweeper
    send them). One school's dead or slow receiver is not a backlog of the deployment. Those
    only the sweeper sends are its to send: its heartbeat says whether it runs.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_NOT_TAKEN_SQL, {"now": now, "cap": BACKLOG_COUNT_CAP})
            oldest, count = cursor.fetchone()
        return Backlog(count=count, oldest=oldest)
    due_times = [
        due
        for due in Delivery.objects.filter(
            status=DeliveryStatus.PENDING,
            enqueued_at__lte=now,
            next_attempt_at__lte=now,
            is_test=False,
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("enqueued_at")
        .values_list("next_attempt_at", flat=True)[:BACKLOG_COUNT_CAP]
        if due is not None
    ]
    return Backlog(count=len(due_times), oldest=min(due_times, default=None))


# In the order of ``delivery_messaged_idx`` (materialized: the oldest due time is taken of the
# rows with a message out, never by walking every due delivery in due order).
_NOT_TAKEN_SQL = """
WITH messaged AS MATERIALIZED (
    SELECT next_attempt_at FROM deliveries_delivery
    WHERE status = 'pending' AND enqueued_at IS NOT NULL AND enqueued_at <= %(now)s
      AND next_attempt_at <= %(now)s AND NOT is_test
      AND (leased_until IS NULL OR leased_until < %(now)s)
    ORDER BY enqueued_at LIMIT %(cap)s
)
SELECT min(next_attempt_at), count(*) FROM messaged
"""


def webhooks_held_by_circuit() -> QuerySet[EndpointState, Any]:
    """The webhooks whose circuit is open or probing, as a subquery of ids: their deliveries
    wait for the probe. Disabled ones aside: their deliveries are refused without a request,
    whatever the circuit, so it holds none of them back."""
    return (
        EndpointState.objects.exclude(circuit_state=CircuitState.CLOSED)
        .filter(subscription__is_active=True)
        .values("pk")
    )


# Why a delivery waits without a message, first reason first (``deliveries_waiting``).
WAITING_REASONS = ("paused", "disabled", "circuit_open", "catching_up", "scheduled", "limit")


def deliveries_waiting(*, now: dt.datetime) -> dict[str, Backlog]:
    """Deliveries that wait by design, without a message, by reason, with the oldest due time
    of each reason; deliveries in flight aside. Each webhook's deliveries take the first reason
    that applies, in the order of ``WAITING_REASONS``:

    - ``paused``: their school paused the webhook (the pause holds them, whatever else);
    - ``disabled``: it is disabled: the sweeper and the attempts that finish take them up, at
      its concurrency whatever its circuit, to fail them with that reason (nothing is sent);
    - ``circuit_open``: its circuit breaker is open or probing: they go one at a time, as its
      probes;
    - ``catching_up``: it resumed, and sends what it held one at a time, oldest first;
    - ``scheduled``: a retry not due yet (the sweeper sends it when it is);
    - ``limit``: due, waiting for a slot of the webhook's concurrency or for its rate (the
      attempts in flight take them up, the sweeper sends them if none is).

    Counted per webhook, up to ``BACKLOG_COUNT_CAP`` due and as many not due: whatever the
    backlogs, every webhook that has one is seen, and each costs a few descents of
    ``delivery_waiting_in_order_idx`` and a count of its entries. A Send Test left waiting by a
    process that died before sending it counts too, until the sweeper ends it. Every reason is
    in the result, with a zero count when nothing waits for it.
    """
    found = {reason: Backlog(count=0, oldest=None) for reason in WAITING_REASONS}
    if connection.vendor == "postgresql":
        # One descent of the index per webhook, whatever the statistics say (see
        # ``plans_in_index_order``).
        with plans_in_index_order(), connection.cursor() as cursor:
            cursor.execute(_WAITING_SQL, {"now": now, "cap": BACKLOG_COUNT_CAP})
            rows = cursor.fetchall()
    else:
        rows = _waiting_rows(now)
    for reason, count, oldest in rows:
        found[reason] = Backlog(count=count, oldest=oldest)
    return found


def _waiting_rows(now: dt.datetime) -> list[tuple[str, int, dt.datetime | None]]:
    """``_WAITING_SQL`` with the ORM, for the embedded SQLite: the same counts, webhook by
    webhook."""
    waiting = Delivery.objects.filter(status=DeliveryStatus.PENDING, enqueued_at__isnull=True)
    webhooks = Subscription.objects.filter(
        pk__in=waiting.order_by().values("subscription_id")
    ).values_list("pk", "is_active", "paused_at", "catching_up_since")
    open_circuits = set(
        EndpointState.objects.exclude(circuit_state=CircuitState.CLOSED).values_list(
            "pk", flat=True
        )
    )
    totals: dict[str, list[Any]] = {}
    for pk, is_active, paused_at, catching_up_since in webhooks:
        mine = waiting.filter(subscription_id=pk).order_by()
        due = mine.filter(next_attempt_at__lte=now)[:BACKLOG_COUNT_CAP].count()
        later = mine.filter(next_attempt_at__gt=now)[:BACKLOG_COUNT_CAP].count()
        in_flight = mine.filter(leased_until__gte=now).count()
        oldest = (
            mine.filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .order_by("next_attempt_at", "id")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        state = _waiting_reason(
            paused=paused_at is not None,
            circuit_open=pk in open_circuits,
            disabled=not is_active,
            catching_up=catching_up_since is not None,
        )
        parts = (
            (state or "limit", max(due - in_flight, 0), oldest),
            (state or "scheduled", later, None),
        )
        for reason, count, when in parts:
            entry = totals.setdefault(reason, [0, None])
            entry[0] += count
            if count and when is not None and (entry[1] is None or when < entry[1]):
                entry[1] = when
    return [(reason, count, oldest) for reason, (count, oldest) in totals.items()]


def _waiting_reason(
    *, paused: bool, circuit_open: bool, disabled: bool, catching_up: bool
) -> str | None:
    """The reason a webhook's deliveries wait, from its state; None: due or not (``limit`` or
    ``scheduled``)."""
    for reason, applies in (
        ("paused", paused),
        ("disabled", disabled),
        ("circuit_open", circuit_open),
        ("catching_up", catching_up),
    ):
        if applies:
            return reason
    return None


# The webhooks that have deliveries waiting without a message, as ``webhooks_waiting(id)``: a
# skip scan of ``delivery_waiting_in_order_idx``, one descent per webhook however long its
# backlog. The recursion ends on a NULL id, which readers filter out. Read by the sweeper
# (``services/redrive.py``) and by ``deliveries_waiting``.
WEBHOOKS_WAITING_CTE = """
webhooks_waiting(id) AS (
    (SELECT subscription_id FROM deliveries_delivery
     WHERE status = 'pending' AND enqueued_at IS NULL ORDER BY subscription_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.subscription_id FROM deliveries_delivery AS d
            WHERE d.status = 'pending' AND d.enqueued_at IS NULL AND d.subscription_id > w.id
            ORDER BY d.subscription_id LIMIT 1)
    FROM webhooks_waiting AS w WHERE w.id IS NOT NULL
)"""


# The webhooks that have waiting deliveries (``WEBHOOKS_WAITING_CTE``), then for each: its
# due and later entries counted up to the
# cap, its deliveries in flight (on ``delivery_leased_idx``: a few) and its oldest waiting
# one, in index order. The webhooks' reasons come from their rows, a few thousand at most.
_WAITING_SQL = (
    "WITH RECURSIVE "  # noqa: S608 - fixed text, no value
    + WEBHOOKS_WAITING_CTE
    + """,
per_webhook AS MATERIALIZED (
    SELECT w.id,
        (SELECT count(*) FROM (SELECT 1 FROM deliveries_delivery AS d
            WHERE d.subscription_id = w.id AND d.status = 'pending' AND d.enqueued_at IS NULL
              AND d.next_attempt_at <= %(now)s LIMIT %(cap)s) AS x) AS due,
        (SELECT count(*) FROM (SELECT 1 FROM deliveries_delivery AS d
            WHERE d.subscription_id = w.id AND d.status = 'pending' AND d.enqueued_at IS NULL
              AND d.next_attempt_at > %(now)s LIMIT %(cap)s) AS x) AS later,
        (SELECT count(*) FROM deliveries_delivery AS f
            WHERE f.subscription_id = w.id AND f.status = 'pending'
              AND f.leased_until >= %(now)s AND f.enqueued_at IS NULL) AS in_flight,
        (SELECT d.next_attempt_at FROM deliveries_delivery AS d
            WHERE d.subscription_id = w.id AND d.status = 'pending' AND d.enqueued_at IS NULL
              AND (d.leased_until IS NULL OR d.leased_until < %(now)s)
            ORDER BY d.next_attempt_at, d.id LIMIT 1) AS oldest
    FROM webhooks_waiting AS w WHERE w.id IS NOT NULL
),
reasons AS (
    SELECT p.*, CASE
            WHEN s.paused_at IS NOT NULL THEN 'paused'
            WHEN NOT s.is_active THEN 'disabled'
            WHEN st.circuit_state IS NOT NULL AND st.circuit_state <> 'closed'
                THEN 'circuit_open'
            WHEN s.catching_up_since IS NOT NULL THEN 'catching_up'
        END AS reason
    FROM per_webhook AS p
    JOIN subscriptions_subscription AS s ON s.id = p.id
    LEFT JOIN deliveries_endpointstate AS st ON st.subscription_id = p.id
)
SELECT part.reason, sum(part.n)::int, min(part.oldest) FILTER (WHERE part.n > 0)
FROM reasons AS r CROSS JOIN LATERAL (VALUES
    (COALESCE(r.reason, 'limit'), GREATEST(r.due - r.in_flight, 0), r.oldest),
    (COALESCE(r.reason, 'scheduled'), r.later, NULL::timestamptz)
) AS part(reason, n, oldest)
GROUP BY part.reason
"""
)


def delivery_backlog(*, now: dt.datetime) -> tuple[float, int]:
    """Seconds the oldest delivery sent to the workers and not taken has been due
    (``deliveries_not_taken``), and how many events await fan-out (an old one means workers
    are not consuming)."""
    oldest = deliveries_not_taken(now=now).oldest
    lag = (now - oldest).total_seconds() if oldest else 0.0
    waiting = Event.objects.filter(fanned_out_at__isnull=True, created_at__lt=now).count()
    return max(lag, 0.0), waiting


def sweeper_last_run() -> dt.datetime | None:
    """When the sweeper last ran (its heartbeat), or None if it never has."""
    return (
        Heartbeat.objects.filter(name=Heartbeat.SWEEPER).values_list("seen_at", flat=True).first()
    )


def deliveries_held_count(*, subscription_id: uuid.UUID) -> int:
    """How many deliveries a paused webhook holds: pending, not tests (sent when it resumes)."""
    return Delivery.objects.filter(
        subscription_id=subscription_id, status=DeliveryStatus.PENDING, is_test=False
    ).count()


@dataclass(frozen=True)
class SubscriptionDeliveryStats:
    """How a webhook's real (not test) deliveries went, for the webhooks list."""

    last_status: str | None = None
    last_error_kind: str = ""
    last_response_status: int | None = None
    last_at: dt.datetime | None = None
    failures_24h: int = 0  # deliveries of the last 24 h with a failed attempt, recovered or not
    recovered_24h: int = 0  # ... of which were delivered in the end
    delivered_7d: int = 0
    failed_7d: int = 0
    in_progress_7d: int = 0  # pending or retrying: no final result yet

    @property
    def success_rate_7d(self) -> float | None:
        """Delivered / (delivered + failed) over 7 days; None without a final delivery."""
        final = self.delivered_7d + self.failed_7d
        return self.delivered_7d / final if final else None


def subscriptions_delivery_stats(
    *, subscription_ids: list[uuid.UUID], now: dt.datetime | None = None
) -> dict[uuid.UUID, SubscriptionDeliveryStats]:
    """For each webhook: its newest delivery (status, answer, time of the last attempt), its
    failures in the last 24 hours (deliveries with a failed attempt: failed, retrying, or
    delivered after a failure, which stay counted as recovered) and its delivered, failed and
    in-progress counts over 7 days.

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
            failing_24h=Count("pk", filter=failing & Q(created_at__gte=day_ago)),
            in_progress=Count("pk", filter=Q(status=DeliveryStatus.PENDING)),
        )
    }
    # Delivered after a failed attempt: only deliveries with more than one attempt can be, so
    # their attempts are read through the (delivery, number) index, never the whole table.
    recovered = dict(
        DeliveryAttempt.objects.filter(
            delivery__subscription_id__in=subscription_ids,
            delivery__is_test=False,
            delivery__created_at__gte=day_ago,
            delivery__status=DeliveryStatus.DELIVERED,
            delivery__attempts__gt=1,
        )
        .exclude(error_kind="")
        .order_by()
        .values("delivery__subscription_id")
        .annotate(count=Count("delivery_id", distinct=True))
        .values_list("delivery__subscription_id", "count")
    )
    newest = Delivery.objects.filter(subscription_id=OuterRef("pk"), is_test=False).order_by(
        "-created_at"
    )
    latest = Subscription.objects.filter(pk__in=subscription_ids).values_list(
        "pk",
        Subquery(newest.values("status")[:1]),
        Subquery(newest.values("last_error_kind")[:1]),
        Subquery(newest.values("last_response_status")[:1]),
        Subquery(newest.values("last_attempt_at")[:1]),
        Subquery(newest.values("created_at")[:1]),
    )
    stats = {}
    for pk, status, error_kind, response_status, last_attempt_at, created_at in latest:
        row: dict[str, Any] = dict(counts.get(pk, {}))
        stats[pk] = SubscriptionDeliveryStats(
            last_status=status,
            last_error_kind=error_kind or "",
            last_response_status=response_status,
            last_at=last_attempt_at or created_at,
            failures_24h=row.get("failing_24h", 0) + recovered.get(pk, 0),
            recovered_24h=recovered.get(pk, 0),
            delivered_7d=row.get("delivered", 0),
            failed_7d=row.get("failed", 0),
            in_progress_7d=row.get("in_progress", 0),
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
    waiting: dict[str, Backlog]
    awaiting_fan_out: Backlog
    webhooks: dict[str, int]
    failing_by_school: list[SchoolFailures]
    heartbeats: dict[str, dt.datetime]


def operations_state(*, now: dt.datetime) -> OperationsState:
    """The deployment's state for /metrics, in eight small queries (the backlogs walk their
    partial indexes; the webhook counts read the webhooks table, a few thousand rows).

    - ``due``: deliveries sent to the workers that none has taken (``deliveries_not_taken``):
      the queue and a dead worker's work, not what waits for its webhook by design.
    - ``waiting``: what waits by design, by reason (``deliveries_waiting``).
    - ``awaiting_fan_out``: events not yet turned into deliveries, on their partial index.
    - ``webhooks``: webhooks by state: ``healthy`` (active, no failure streak), ``failing``
      (active, in a streak), ``paused`` (by its school: nothing is sent) and ``disabled``.
    - ``failing_by_school``: per school with a failing webhook, how many and the oldest
      streak's start, longest streak first.
    - ``heartbeats``: every heartbeat row (beat, sweeper, ``worker:<hostname>``).
    """
    awaiting = Event.objects.filter(fanned_out_at__isnull=True)
    webhooks = Subscription.objects.aggregate(
        healthy=Count(
            "pk", filter=Q(is_active=True, paused_at__isnull=True, failing_since__isnull=True)
        ),
        failing=Count(
            "pk", filter=Q(is_active=True, paused_at__isnull=True, failing_since__isnull=False)
        ),
        paused=Count("pk", filter=Q(is_active=True, paused_at__isnull=False)),
        disabled=Count("pk", filter=Q(is_active=False)),
    )
    failing = (
        Subscription.objects.filter(
            is_active=True, paused_at__isnull=True, failing_since__isnull=False
        )
        .order_by()
        .values("school__slug")
        .annotate(failing=Count("pk"), since=Min("failing_since"))
        .order_by("since", "school__slug")
    )
    return OperationsState(
        due=deliveries_not_taken(now=now),
        waiting=deliveries_waiting(now=now),
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


_HEX = re.compile(r"[0-9a-f]{4,32}")


def deliveries_search_q(*, term: str, webhooks: QuerySet[Subscription]) -> Q:
    """The deliveries a typed search means, as one condition (nothing for an empty term).

    - a delivery id, ``webhook-id`` (``msg_…``) or event id, whole or its first 4+ hex digits
      (a range of the primary key or the event index, as GitHub's short ids);
    - an event type, or a pattern such as ``course.*`` (the catalog's matching keys, on the
      (event_type, created_at) index);
    - part of a webhook's name (among ``webhooks``, the user's);
    - an HTTP status such as ``500`` (the last answer; read from the newest rows down).
    """
    term = term.strip()
    found = Q(pk__in=[])
    if not term:
        return found
    digits = term.removeprefix("msg_").replace("-", "").lower()
    if _HEX.fullmatch(digits):
        low = uuid.UUID(digits.ljust(32, "0"))
        high = uuid.UUID(digits.ljust(32, "f"))
        found |= Q(pk__gte=low, pk__lte=high) | Q(event_id__gte=low, event_id__lte=high)
    if re.fullmatch(r"[1-5][0-9]{2}", term):
        found |= Q(last_response_status=int(term))
    keys = list(EventType.objects.values_list("key", flat=True))
    pattern = term.lower()
    types = [key for key in keys if key == pattern or topic_matches([pattern], key)]
    if not types and len(pattern) >= 3:
        types = [key for key in keys if key.startswith(pattern)]
    if types:
        found |= Q(event_type__in=types)
    named = list(webhooks.filter(name__icontains=term).values_list("pk", flat=True)[:100])
    if named:
        found |= Q(subscription_id__in=named)
    return found


def deliveries_payload_q(*, term: str, school_ids: Iterable[int] | None) -> Q:
    """The deliveries whose event's data mentions ``term`` (``events.search``: every text and
    number value, whole words, ``"a phrase"``), among the events of ``school_ids`` (every
    school for None). Test deliveries' sample events are searched too.

    One semi-join on the events' GIN index, which lets PostgreSQL pick per term: for a rare
    value, the few matching events (a bitmap scan of the index) then their deliveries (the
    event index), then the newest first; for a common one, the log's newest rows, each
    checked against its event until a page is full. (A list of the matching event ids made
    it walk the log checking each row against the whole list: 100 ms against 10 at 1M.)
    """
    events = Event.objects.all()
    if school_ids is not None:
        events = events.filter(school_id__in=list(school_ids))
    matching = events_payload_matching(events, term=term, vendor=connection.vendor).order_by()
    return Q(event_id__in=matching.values("pk"))


# --- The home page and a webhook's page: how deliveries are going ----------------------------


@dataclass(frozen=True)
class Bucket:
    """Deliveries created in one hour or one day, by their state now."""

    start: dt.datetime
    delivered: int = 0
    pending: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.pending + self.retrying + self.failed


@dataclass(frozen=True)
class Timeline:
    """The last 24 hours by hour and the last 7 days by day, in the zone given."""

    hours: list[Bucket]
    days: list[Bucket]
    zone: str

    def totals(self, buckets: list[Bucket]) -> Bucket:
        return Bucket(
            start=buckets[0].start if buckets else timezone.now(),
            delivered=sum(b.delivered for b in buckets),
            pending=sum(b.pending for b in buckets),
            retrying=sum(b.retrying for b in buckets),
            failed=sum(b.failed for b in buckets),
        )


def deliveries_timeline(
    *,
    school_ids: list[int] | None,
    subscription_id: uuid.UUID | None = None,
    zone: dt.tzinfo,
    now: dt.datetime | None = None,
    cache_seconds: float = 0,
) -> Timeline:
    """Deliveries (not tests) created per hour over the last 24 hours and per day over the last
    7 days, each split by state, for the given schools (None: all) or one webhook.

    Two grouped queries on the (school or webhook, created_at) indexes, hours truncated in
    ``zone`` so days start at the zone's midnight: the last 24 hours (which hold today) always
    fresh, the six days before today kept in the cache for ``cache_seconds`` when given (at a
    million deliveries those are most of the rows, and their counts hardly change).
    """
    now = now or timezone.now()
    local_now = now.astimezone(zone)
    today = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = (today - dt.timedelta(days=6)).replace(tzinfo=None)
    first_day_aware = first_day.replace(tzinfo=zone)  # type: ignore[arg-type]
    midnight = today.replace(tzinfo=None).replace(tzinfo=zone)  # type: ignore[arg-type]
    this_hour = local_now.replace(minute=0, second=0, microsecond=0)
    first_hour = this_hour - dt.timedelta(hours=23)
    queryset = Delivery.objects.filter(is_test=False)
    if subscription_id is not None:
        queryset = queryset.filter(subscription_id=subscription_id)
    if school_ids is not None:
        queryset = queryset.filter(school_id__in=school_ids)

    fields = ("delivered", "pending", "retrying", "failed")
    by_hour = _hourly_counts(queryset.filter(created_at__gte=min(first_hour, midnight)), zone)
    key = f"deliveries-timeline:{subscription_id}:{_scope(school_ids)}:{zone}:{first_day.date()}"

    def earlier_days() -> dict[dt.date, dict[str, int]]:
        days: dict[dt.date, dict[str, int]] = {}
        older = queryset.filter(created_at__gte=first_day_aware, created_at__lt=midnight)
        for hour, counts in _hourly_counts(older, zone).items():
            day = days.setdefault(hour.date(), dict.fromkeys(fields, 0))
            for name in fields:
                day[name] += counts[name]
        return days

    by_day: dict[dt.date, dict[str, int]] = (
        caches["default"].get_or_set(_cache_key(key), earlier_days, cache_seconds) or {}
        if cache_seconds
        else earlier_days()
    )
    today_counts = dict.fromkeys(fields, 0)
    for hour, counts in by_hour.items():
        if hour >= midnight:
            for name in fields:
                today_counts[name] += counts[name]
    by_day = {**by_day, today.date(): today_counts}
    hours = []
    for step in range(24):
        start = (first_hour + dt.timedelta(hours=step)).astimezone(zone)
        hours.append(Bucket(start=start, **by_hour.get(start, {})))
    days = []
    for step in range(7):
        date = first_day.date() + dt.timedelta(days=step)
        start = dt.datetime.combine(date, dt.time.min).replace(tzinfo=zone)  # type: ignore[arg-type]
        days.append(Bucket(start=start, **by_day.get(date, {})))
    return Timeline(hours=hours, days=days, zone=str(zone))


def _scope(school_ids: list[int] | None) -> str:
    return "*" if school_ids is None else ",".join(map(str, sorted(school_ids)))


def _cache_key(text: str) -> str:
    return "webhooks:" + hashlib.sha256(text.encode()).hexdigest()


def _hourly_counts(
    queryset: QuerySet[Delivery], zone: dt.tzinfo
) -> dict[dt.datetime, dict[str, int]]:
    """The queryset's deliveries counted by state per hour of ``zone``."""
    retrying = Q(status=DeliveryStatus.PENDING) & ~Q(last_error_kind="")
    rows = (
        queryset.order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=zone))
        .values("hour")
        .annotate(
            delivered=Count("pk", filter=Q(status=DeliveryStatus.DELIVERED)),
            failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
            retrying=Count("pk", filter=retrying),
            pending=Count("pk", filter=Q(status=DeliveryStatus.PENDING, last_error_kind="")),
        )
    )
    return {
        row["hour"].astimezone(zone): {
            "delivered": row["delivered"],
            "pending": row["pending"],
            "retrying": row["retrying"],
            "failed": row["failed"],
        }
        for row in rows
    }


@dataclass(frozen=True)
class SlowReceiver:
    subscription: Subscription
    attempts: int
    average_ms: int
    slowest_ms: int


def receivers_slowest(
    *,
    school_ids: list[int] | None,
    now: dt.datetime | None = None,
    limit: int = 5,
    cache_seconds: float = 0,
) -> list[SlowReceiver]:
    """The webhooks whose receivers answered slowest on average over the last 24 hours
    (attempts of deliveries created in that time that got an answer; tests left out), kept in
    the cache for ``cache_seconds`` when given."""
    if cache_seconds:
        key = _cache_key(f"receivers-slowest:{_scope(school_ids)}:{limit}")
        return caches["default"].get_or_set(  # type: ignore[return-value]
            key,
            lambda: receivers_slowest(school_ids=school_ids, now=now, limit=limit),
            cache_seconds,
        )
    now = now or timezone.now()
    attempts = DeliveryAttempt.objects.filter(
        delivery__created_at__gte=now - dt.timedelta(days=1),
        delivery__is_test=False,
        response_status__isnull=False,
    )
    if school_ids is not None:
        attempts = attempts.filter(delivery__school_id__in=school_ids)
    rows = list(
        attempts.order_by()
        .values("delivery__subscription_id")
        .annotate(count=Count("pk"), average=Avg("duration_ms"), slowest=Max("duration_ms"))
        .order_by("-average")[:limit]
    )
    webhooks = Subscription.objects.select_related("school").in_bulk(
        [row["delivery__subscription_id"] for row in rows]
    )
    return [
        SlowReceiver(
            subscription=webhooks[row["delivery__subscription_id"]],
            attempts=row["count"],
            average_ms=round(row["average"] or 0),
            slowest_ms=row["slowest"] or 0,
        )
        for row in rows
        if row["delivery__subscription_id"] in webhooks
    ]


def deliveries_recent(*, subscription_id: uuid.UUID, limit: int = 10) -> list[Delivery]:
    """The webhook's newest deliveries (tests included), without their bodies."""
    return list(
        Delivery.objects.filter(subscription_id=subscription_id)
        .select_related("school")
        .defer("body")
        .order_by("-created_at")[:limit]
    )


def subscriptions_last_failure(*, subscription_ids: list[uuid.UUID]) -> dict[uuid.UUID, Delivery]:
    """For each webhook, its newest real delivery whose last attempt failed (what to tell the
    school about a failing webhook); one query per webhook on the (webhook, created_at) index."""
    failing = Q(status=DeliveryStatus.FAILED) | (
        Q(status=DeliveryStatus.PENDING) & ~Q(last_error_kind="")
    )
    found: dict[uuid.UUID, Delivery] = {}
    for subscription_id in subscription_ids:
        delivery = (
            Delivery.objects.filter(subscription_id=subscription_id, is_test=False)
            .filter(failing)
            .defer("body")
            .order_by("-created_at")
            .first()
        )
        if delivery is not None:
            found[subscription_id] = delivery
    return found


def endpoint_states(*, subscription_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, EndpointState]:
    """The circuit breaker and rate state of each of these webhooks that has one (a webhook
    without a row has a closed circuit and no failures), in one query."""
    return {
        state.pk: state for state in EndpointState.objects.filter(pk__in=list(subscription_ids))
    }
