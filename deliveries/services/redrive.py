"""Re-driving deliveries: the sweeper for lost work, and retriggers by people."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from audit.models import AuditAction
from audit.services import Actor, audit_record, audit_record_many
from common.clock import db_now
from common.sql import Written, plans_in_index_order
from common.transactions import after_commit
from events.models import Event, ScheduledEvent
from subscriptions.models import Subscription
from webhook_engine.errors import ErrorKind
from webhook_engine.retry import is_retryable
from webhook_engine.transport import TransportResult

from ..models import (
    AttemptTrigger,
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    delivery_state,
)
from ..selectors import WEBHOOKS_WAITING_CTE, webhooks_held_by_circuit
from .claim import Claim, attempts_interrupted_record, waiting_due
from .fan_out import (
    FAN_OUT_REQUEST_RESEND_SECONDS,
    deliveries_enqueue,
    deliveries_enqueue_selection,
    delivery_build,
    events_fan_out_waiting,
    fan_out_request,
)
from .heartbeats import SWEEPER, heartbeat_record
from .pausing import catch_ups_drive, subscriptions_resume_due

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    events_fanned_out: int
    deliveries_enqueued: int
    probes_sent: int = 0


def deliveries_sweep(*, limit: int = 2000) -> SweepResult:
    """Re-drive work whose message was lost; safe to run from several beat processes at once.

    Fans out events that were never fanned out, and enqueues pending deliveries that are due but
    have no live message: enqueued longer ago than ``WEBHOOKS_REDRIVE_AFTER_SECONDS`` without
    being picked up (a broker that lost its queue, a worker killed with messages in hand), or
    claimed by a worker whose lease has expired, or waiting for their webhook while nothing of
    that webhook is in flight to wake them (as many as its concurrency: the attempts they start
    take up the rest). Each read walks the few rows it takes, however large a paused, broken
    or busy webhook's backlog. A webhook whose circuit is open gets one probe when
    its time has come, and nothing else. Rows locked by another sweeper are skipped.

    Paused webhooks whose resume time has come are resumed; a paused webhook's held deliveries
    are left alone, and a catching-up webhook's waiting ones are driven by ``catch_ups_drive``
    (pausing.py), one at a time.
    """
    now = db_now()
    stale = now - dt.timedelta(seconds=settings.WEBHOOKS_REDRIVE_AFTER_SECONDS)
    for step in (
        lambda: subscriptions_resume_due(now=now),
        catch_ups_drive,  # at its own now: a resume just now lined its deliveries up before it
    ):
        try:
            step()
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable: the whole sweep is retried (tasks.py)
        except Exception:
            # A pause that cannot be ended now must not hold up the rest of the sweep.
            logger.exception(
                "Resuming paused webhooks or driving their catch-ups failed; tried again next sweep"
            )
    try:
        fanned_out = events_fan_out_waiting(created_before=stale, limit=limit)
        _fan_out_nudge(now=now, stale=stale)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        # Events that cannot be fanned out must not hold up the deliveries.
        logger.exception("Re-driving events awaiting fan-out failed; they will be tried again")
        fanned_out = 0

    with transaction.atomic():
        ids = _messages_lost(now=now, stale=stale, limit=limit)
        ids += _waiting_unattended(now=now, limit=limit - len(ids))
        if ids:
            Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
            # More than one message's worth at once is a large operation's messages still
            # queued behind other work (the sweeper cannot tell them from lost ones), or a
            # queue the broker lost: sent again behind every other message, so that new
            # events go first.
            after_commit(deliveries_enqueue_selection, ids)
    probes = _probes_send(now=now, limit=limit)
    send_tests_lost(now=now).update(
        status=DeliveryStatus.FAILED,
        next_attempt_at=None,
        leased_until=None,
        last_error_kind=ErrorKind.INTERRUPTED,
        last_error="The Send Test did not finish: the process sending it stopped.",
    )
    if fanned_out or ids or probes:
        logger.info(
            "Sweeper re-drove %d events and %d deliveries, sent %d probes",
            fanned_out,
            len(ids),
            probes,
        )
    heartbeat_record(name=SWEEPER, now=now)
    return SweepResult(
        events_fanned_out=fanned_out, deliveries_enqueued=len(ids), probes_sent=probes
    )


def _fan_out_nudge(*, now: dt.datetime, stale: dt.datetime) -> None:
    """Ask for a fan-out when an event has waited longer than a request takes to be sent
    again (``FAN_OUT_REQUEST_RESEND_SECONDS``) and none is pending: its request was lost, or
    the task that promised to read it died, and no publish since has asked. A worker then
    fans it out within seconds, not when it is old enough for this sweeper to take it
    (``stale``). Those older are this sweeper's own; so a poisonous event is not asked for
    again every sweep."""
    late = now - dt.timedelta(seconds=FAN_OUT_REQUEST_RESEND_SECONDS)
    waiting = Event.objects.filter(
        fanned_out_at__isnull=True, created_at__lt=late, created_at__gte=stale
    )
    if waiting.exists() and fan_out_request():
        logger.info(
            "Events waited %.0f s for fan-out; asked for it", FAN_OUT_REQUEST_RESEND_SECONDS
        )


def _messages_lost(*, now: dt.datetime, stale: dt.datetime, limit: int) -> list[uuid.UUID]:
    """Due deliveries whose message went out before ``stale`` and that no worker holds (a
    broker that lost its queue, a worker killed with messages in hand or mid-attempt), oldest
    message first; no automatic one of a paused webhook or one whose circuit is open ("send
    now" goes whatever holds the others). Locked.

    Read through ``delivery_messaged_idx``: the deliveries with a message out, a queue's
    worth, however many wait without one.
    """
    paused = Subscription.objects.filter(paused_at__isnull=False).values("pk")
    return list(
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(
            status=Written(DeliveryStatus.PENDING),  # the index's condition: any plan uses it
            enqueued_at__lt=stale,
            next_attempt_at__lte=now,
            is_test=False,
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .exclude(
            # "Send now" goes whatever the pause or the circuit: its lost message too.
            Q(next_trigger__in=[AttemptTrigger.AUTOMATIC, AttemptTrigger.RECOVERY])
            & (Q(subscription_id__in=webhooks_held_by_circuit()) | Q(subscription_id__in=paused))
        )
        .order_by("enqueued_at")
        .values_list("id", flat=True)[:limit]
    )


def _waiting_unattended(*, now: dt.datetime, limit: int) -> list[uuid.UUID]:
    """Due deliveries waiting (no message) for a webhook with nothing in flight, which no
    finishing attempt will take up: as many per webhook as its concurrency, due first (the
    attempts they start take up the rest). None of a paused webhook, of an active one whose
    circuit is open (its probe goes first) or of one catching up (``catch_ups_drive``). Locked.
    """
    if limit <= 0:
        return []
    concurrency = settings.WEBHOOKS_ENDPOINT_CONCURRENCY
    if connection.vendor == "postgresql":
        # The walk from one webhook to the next must stay one descent of the index each: with
        # statistics older than the backlogs, PostgreSQL read every later webhook's deliveries
        # through a bitmap at each step and sorted them (15,011 rows behind three backlogs).
        with plans_in_index_order(), connection.cursor() as cursor:
            cursor.execute(
                _WAITING_UNATTENDED_SQL, {"now": now, "concurrency": concurrency, "limit": limit}
            )
            return [row[0] for row in cursor.fetchall()]
    # Elsewhere (the embedded SQLite, a few rows): the same rule in one query.
    in_flight = Delivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        status=DeliveryStatus.PENDING,
        leased_until__gte=now,
    )
    rows = (
        waiting_due(now)
        .exclude(Exists(in_flight))
        .exclude(subscription_id__in=webhooks_held_by_circuit())
        .filter(subscription__paused_at__isnull=True, subscription__catching_up_since__isnull=True)
        .values_list("id", "subscription_id", "subscription__max_concurrency")
    )
    ids: list[uuid.UUID] = []
    taken: dict[uuid.UUID, int] = {}
    for pk, endpoint, share in rows:
        if taken.get(endpoint, 0) < (share or concurrency):
            taken[endpoint] = taken.get(endpoint, 0) + 1
            ids.append(pk)
            if len(ids) >= limit:
                break
    return ids


# The webhooks with waiting deliveries (``WEBHOOKS_WAITING_CTE``: one descent of
# ``delivery_waiting_in_order_idx`` per webhook, not one step per delivery); those
# that may send and have nothing in flight (materialized: filtered before any row is locked);
# then the first few of each from the same index, in order. A paused, broken or busy webhook's
# backlog is not read at all.
_WAITING_UNATTENDED_SQL = (
    "WITH RECURSIVE "  # noqa: S608 - fixed text, no value
    + WEBHOOKS_WAITING_CTE
    + """,
unattended AS MATERIALIZED (
    SELECT s.id, COALESCE(NULLIF(s.max_concurrency, 0), %(concurrency)s) AS share
    FROM webhooks_waiting AS w JOIN subscriptions_subscription AS s ON s.id = w.id
    WHERE s.paused_at IS NULL AND s.catching_up_since IS NULL
      AND (NOT s.is_active OR NOT EXISTS (SELECT 1 FROM deliveries_endpointstate AS b
                      WHERE b.subscription_id = s.id AND b.circuit_state <> 'closed'))
      AND NOT EXISTS (SELECT 1 FROM deliveries_delivery AS f
                      WHERE f.subscription_id = s.id AND f.status = 'pending'
                        AND f.leased_until >= %(now)s)
)
SELECT c.id FROM unattended AS u CROSS JOIN LATERAL (
    SELECT d.id FROM deliveries_delivery AS d
    WHERE d.subscription_id = u.id AND d.status = 'pending' AND d.enqueued_at IS NULL
      AND d.next_attempt_at <= %(now)s AND NOT d.is_test
      AND (d.leased_until IS NULL OR d.leased_until < %(now)s)
    ORDER BY d.next_attempt_at, d.id LIMIT u.share
    FOR UPDATE OF d SKIP LOCKED
) AS c
LIMIT %(limit)s
"""
)


def send_tests_lost(*, now: dt.datetime) -> QuerySet[Delivery]:
    """Send Tests still pending long after they were made: the process sending them stopped.

    A Send Test is sent in the request that made it (or, sent again, by the worker its
    retrigger enqueued). Read through ``delivery_test_pending_idx``: a handful of rows, however
    many other deliveries wait.
    """
    lost_before = now - dt.timedelta(minutes=5)
    return (
        Delivery.objects.filter(
            is_test=True, status=Written(DeliveryStatus.PENDING), created_at__lt=lost_before
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost_before))
    )


def _probes_send(*, now: dt.datetime, limit: int) -> int:
    """For each webhook whose circuit is open and due for a probe, enqueue its oldest due
    delivery (the claim lets exactly one through)."""
    endpoints = list(
        EndpointState.objects.exclude(circuit_state=CircuitState.CLOSED)
        .filter(
            probe_at__lte=now,
            subscription__paused_at__isnull=True,
            subscription__is_active=True,  # a disabled one's go without probes
        )
        .order_by("probe_at")
        .values_list("pk", "probe_at")[:limit]
    )
    probes = []
    idle = dt.timedelta(seconds=settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS)
    found = probe_deliveries(endpoints=[endpoint for endpoint, _ in endpoints], now=now, due=True)
    for endpoint, probe_at in endpoints:
        oldest = found.get(endpoint)
        if oldest is not None:
            probes.append(oldest)
        else:
            # Nothing to probe with now (its deliveries ended, or are not due yet): looked at
            # again after a cooldown, so that such webhooks do not fill every sweep's
            # ``limit`` and leave those with a backlog without a probe. Unless a claim or a
            # result moved its probe meanwhile.
            EndpointState.objects.filter(pk=endpoint, probe_at=probe_at).update(probe_at=now + idle)
    if probes:
        deliveries_enqueue(probes)
    return len(probes)


def probe_deliveries(
    *, endpoints: Iterable[uuid.UUID], now: dt.datetime, due: bool
) -> dict[uuid.UUID, uuid.UUID]:
    """The delivery each of ``endpoints``' probe sends (webhook: delivery; none for a webhook
    with nothing to send): its oldest pending one that no worker holds (due by ``now`` if
    ``due``), Send Tests aside. Its waiting ones are read first, from
    ``delivery_waiting_in_order_idx`` in order (a few entries, however long the backlog of a
    receiver that has been dead for days); only if none waits, those with a message out.
    One read for all the webhooks per kind (when a receiver host goes down, a hundred circuits
    open in one batch of results)."""
    endpoints = list(endpoints)
    if not endpoints:
        return {}
    pending = Delivery.objects.filter(
        subscription_id=OuterRef("pk"), status=Written(DeliveryStatus.PENDING), is_test=False
    ).filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
    if due:
        pending = pending.filter(next_attempt_at__lte=now)
    found: dict[uuid.UUID, uuid.UUID] = {}
    # In index order, whatever the statistics say: with an estimate of a few rows (a new
    # webhook, dead from the start) PostgreSQL read all of them through the webhook's index
    # and sorted them.
    with plans_in_index_order():
        for messaged in (False, True):
            left = [endpoint for endpoint in endpoints if endpoint not in found]
            if not left:
                break
            oldest = (
                pending.filter(enqueued_at__isnull=not messaged)
                .order_by("next_attempt_at", "id")
                .values("pk")[:1]
            )
            found.update(
                (endpoint, delivery)
                for endpoint, delivery in Subscription.objects.filter(pk__in=left)
                .order_by()  # not the webhooks' own order: it joins their schools
                .annotate(oldest=oldest)
                .values_list("pk", "oldest")
                if delivery is not None
            )
    return found


class RetriggerOutcome(enum.StrEnum):
    """What asking to send a delivery now did to it."""

    # It goes out now (a worker takes it within moments), or, beyond its webhook's free slots
    # in a selection, in turn within the webhook's limits (``RetriggerResult.in_turn``).
    QUEUED = "queued"
    ALREADY_QUEUED = "already_queued"  # an earlier "send now" is still waiting for a worker
    IN_FLIGHT = "in_flight"  # a worker is sending it right now
    WEBHOOK_DISABLED = "webhook_disabled"  # nothing is sent to a disabled webhook
    # Its body was never rendered (its webhook's template failed on the event) and the
    # template still fails: nothing is sent, the delivery keeps the reason of now.
    TEMPLATE_ERROR = "template_error"


@dataclass(frozen=True)
class RetriggerResult:
    """How many deliveries each outcome had."""

    counts: dict[RetriggerOutcome, int]
    # Of the queued ones, how many wait for their turn within their webhooks' limits.
    in_turn: int = 0

    @property
    def queued(self) -> int:
        return self.counts.get(RetriggerOutcome.QUEUED, 0)

    @property
    def skipped(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome != RetriggerOutcome.QUEUED)

    def count(self, outcome: RetriggerOutcome) -> int:
        return self.counts.get(outcome, 0)


def _redrive(
    queryset: QuerySet[Delivery] | list[uuid.UUID | str], *, actor: Actor | None
) -> RetriggerResult:
    """Make the deliveries of the queryset (or of these ids) due now for one manual attempt
    ("send now"), however many (every page of the delivery log selected, say).

    Any state: delivered, failed, or pending (waiting for its first or next automatic attempt).
    A pending one remembers its schedule in ``resume_attempt_at``: if the manual attempt fails,
    the automatic attempts go on from there (``retrigger_schedule_resume``). Not queued: a
    delivery of a disabled webhook (test deliveries excepted: a Send Test may check a disabled
    webhook), one a worker is sending right now, one already waiting to be sent now. A
    delivery whose template failed at fan-out (nothing rendered, nothing sent) is rendered
    with its webhook's current settings first (``bodies_render_again``); if that still fails
    it is not queued (``TEMPLATE_ERROR``). Each queued delivery gets an audit entry.

    Each webhook gets at once as many as it has free slots (at least one); the rest of a larger
    selection follow in turn within its limits (``_at_once_and_later``).
    """
    now = db_now()
    counts: dict[RetriggerOutcome, int] = {}

    def add(outcome: RetriggerOutcome, number: int = 1) -> None:
        counts[outcome] = counts.get(outcome, 0) + number

    with transaction.atomic():
        if isinstance(queryset, QuerySet):
            wanted = list(queryset.order_by().values_list("pk", flat=True))
        else:
            wanted = [
                pk
                for piece in _pieces(queryset)
                for pk in Delivery.objects.filter(pk__in=piece).values_list("pk", flat=True)
            ]
        rows = [
            row
            for piece in _pieces(wanted)
            for row in Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=piece)
            .select_related("subscription")
            .only(
                "pk",
                "school_id",
                "event_type",
                "status",
                "is_test",
                "created_at",
                "next_trigger",
                "next_attempt_at",
                "resume_attempt_at",
                "enqueued_at",
                "attempts",
                "leased_until",
                "lease_token",
                "last_attempt_at",
                "last_error_kind",
                "subscription__name",
                "subscription__url",
                "subscription__is_active",
                "subscription__max_concurrency",
            )
        ]
        add(RetriggerOutcome.IN_FLIGHT, len(wanted) - len(rows))  # locked: being recorded
        queued: list[Delivery] = []
        for row in rows:
            if not row.subscription.is_active and not row.is_test:
                add(RetriggerOutcome.WEBHOOK_DISABLED)
            elif (
                row.status == DeliveryStatus.PENDING and row.leased_until and row.leased_until > now
            ):
                add(RetriggerOutcome.IN_FLIGHT)
            elif row.status == DeliveryStatus.PENDING and row.next_trigger not in _IN_TURN:
                add(RetriggerOutcome.ALREADY_QUEUED)
            else:
                queued.append(row)
        unrendered = bodies_render_again([row.pk for row in queued if _never_rendered(row)])
        add(RetriggerOutcome.TEMPLATE_ERROR, len(unrendered))
        queued = [row for row in queued if row.pk not in unrendered]
        if not queued:
            return RetriggerResult(counts)
        # A lease that ran out without a result is an attempt a worker lost: logged as the
        # claim would have logged it, since clearing the lease here hides it from the claim.
        attempts_interrupted_record(
            [
                (row, row.attempts)
                for row in queued
                if row.status == DeliveryStatus.PENDING
                and row.leased_until is not None
                and row.attempts > 0
            ]
        )
        now_ids, later = _at_once_and_later(queued, now=now)
        for piece in _pieces(now_ids):
            Delivery.objects.filter(pk__in=piece).update(
                # A waiting delivery keeps its schedule for after a failed manual attempt (one
                # waiting in turn already holds it).
                resume_attempt_at=Case(
                    When(
                        status=DeliveryStatus.PENDING,
                        next_trigger=AttemptTrigger.RECOVERY,
                        then=F("resume_attempt_at"),
                    ),
                    When(status=DeliveryStatus.PENDING, then=F("next_attempt_at")),
                    default=None,
                ),
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
                next_trigger=Case(
                    When(is_test=True, then=Value(AttemptTrigger.TEST)),
                    default=Value(AttemptTrigger.MANUAL),
                ),
                enqueued_at=now,
                leased_until=None,
                lease_token=None,
            )
        _later_wait(later, now=now)
        waiting = {row.pk for row in later}
        audit_record_many(
            actor=actor,
            action=AuditAction.DELIVERY_RETRIGGERED,
            entries=[
                (
                    row.school_id,
                    "delivery",
                    row.pk,
                    f"{row.event_type} → {row.subscription.name}",
                    {
                        "state": [
                            str(delivery_state(row.status, row.last_error_kind).value),
                            "sending in turn" if row.pk in waiting else "sending now",
                        ]
                    },
                )
                for row in queued
            ],
        )
        # Send Tests never go behind other messages: a person waits for each, and the
        # sweeper does not send them again.
        tests = {row.pk for row in queued if row.is_test}
        after_commit(deliveries_enqueue, [pk for pk in now_ids if pk in tests])
        after_commit(deliveries_enqueue_selection, [pk for pk in now_ids if pk not in tests])
    add(RetriggerOutcome.QUEUED, len(queued))
    return RetriggerResult(counts, in_turn=len(later))


# Pending with these, a delivery is not yet on its way: "send now" sends it.
_IN_TURN = frozenset({AttemptTrigger.AUTOMATIC, AttemptTrigger.RECOVERY})


def _at_once_and_later(
    queued: list[Delivery], *, now: dt.datetime
) -> tuple[list[uuid.UUID], list[Delivery]]:
    """Split a "send now" into the deliveries that go at once and those that follow.

    Each webhook gets at once as many of its slots as are free (its concurrency less what is
    in flight or already on its way by hand), oldest first, and at least one: a person's
    "send now" of one delivery goes. The rest of its share of the selection follow as its own
    deliveries go (``_later_wait``). Sent all at once, a selection of thousands would flood
    the receiver and, if it is dead, hold every worker's send slots for the timeout, whatever
    the other schools' webhooks are waiting for. Send Tests go at once and take no slot here:
    they are never sent within the limits.
    """
    default = settings.WEBHOOKS_ENDPOINT_CONCURRENCY
    taken = _slots_taken({row.subscription_id for row in queued if not row.is_test}, now=now)
    at_once: list[uuid.UUID] = []
    later: list[Delivery] = []
    sent: dict[uuid.UUID, int] = {}
    for row in sorted(queued, key=lambda row: (row.created_at, str(row.pk))):
        endpoint = row.subscription_id
        free = (row.subscription.max_concurrency or default) - taken.get(endpoint, 0)
        if row.is_test:
            at_once.append(row.pk)
        elif sent.get(endpoint, 0) < max(1, free):
            sent[endpoint] = sent.get(endpoint, 0) + 1
            at_once.append(row.pk)
        else:
            later.append(row)
    return at_once, later


def _slots_taken(endpoints: set[uuid.UUID], *, now: dt.datetime) -> dict[uuid.UUID, int]:
    """How many of each webhook's slots are taken: attempts in flight, and deliveries sent now
    by hand that a worker has not taken up yet (read through ``delivery_leased_idx`` and
    ``delivery_messaged_idx``, not the webhooks' backlogs)."""
    if not endpoints:
        return {}
    rows = (
        Delivery.objects.filter(
            subscription_id__in=endpoints, status=Written(DeliveryStatus.PENDING)
        )
        .filter(
            Q(leased_until__gte=now)
            | Q(
                enqueued_at__isnull=False,
                next_trigger__in=[AttemptTrigger.MANUAL, AttemptTrigger.TEST],
            )
        )
        .order_by()
        .values("subscription_id")
        .annotate(taken=Count("pk"))
    )
    return {row["subscription_id"]: row["taken"] for row in rows}


# Deliveries (``ids``, oldest first) made to wait in turn, as recovered ones and the rest of a
# large "send now" do: pending, due a microsecond apart just before ``now`` in their order, no
# message, one attempt each within the webhook's limits; a pending one that was waiting between
# automatic attempts keeps that schedule (``resume_attempt_at``) for if this attempt fails.
# Only rows whose status is among ``statuses`` (checked again here: a row sent now meanwhile is
# left as it is). One statement however many, each row found by its key whatever the table's
# statistics say (an outage fills the table faster than they follow).
_IN_TURN_SQL = """
UPDATE deliveries_delivery AS d
SET resume_attempt_at = CASE
        WHEN d.status = 'pending' AND d.next_trigger = 'recovery' THEN d.resume_attempt_at
        WHEN d.status = 'pending' THEN d.next_attempt_at END,
    status = 'pending', next_trigger = 'recovery', enqueued_at = NULL, leased_until = NULL,
    lease_token = NULL, next_attempt_at = %(now)s - later.place * interval '1 microsecond'
FROM unnest(%(ids)s::uuid[], %(places)s::integer[]) AS later(id, place)
WHERE d.id = later.id AND d.id = ANY(%(ids)s::uuid[]) AND d.status = ANY(%(statuses)s)
RETURNING d.id
"""


def _in_turn_wait(ids: list[uuid.UUID], *, now: dt.datetime, statuses: list[str]) -> set[uuid.UUID]:
    """``_IN_TURN_SQL`` (PostgreSQL); return the ids it changed."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            _IN_TURN_SQL,
            {
                "now": now,
                "ids": ids,
                "places": list(range(len(ids), 0, -1)),
                "statuses": statuses,
            },
        )
        return {row[0] for row in cursor.fetchall()}


def _later_wait(later: list[Delivery], *, now: dt.datetime) -> None:
    """Make ``later`` (oldest first) wait for their webhooks' slots (``_IN_TURN_SQL``), as a
    recovery's deliveries do (``deliveries_recover``). The attempts in flight take them up as
    they finish (the sweeper, if none is)."""
    if connection.vendor == "postgresql":
        _in_turn_wait([row.pk for row in later], now=now, statuses=list(DeliveryStatus.values))
        return
    _later_wait_elsewhere(later, list(range(len(later), 0, -1)), now=now)


def _later_wait_elsewhere(later: list[Delivery], places: list[int], *, now: dt.datetime) -> None:
    """``_IN_TURN_SQL`` for the embedded SQLite (a demo's few rows)."""
    for row, place in zip(later, places, strict=True):
        if row.status != DeliveryStatus.PENDING:
            row.resume_attempt_at = None
        elif row.next_trigger != AttemptTrigger.RECOVERY:
            row.resume_attempt_at = row.next_attempt_at
        row.status = DeliveryStatus.PENDING
        row.next_trigger = AttemptTrigger.RECOVERY
        row.next_attempt_at = now - dt.timedelta(microseconds=place)
        row.enqueued_at = None
        row.leased_until = None
        row.lease_token = None
    Delivery.objects.bulk_update(
        later,
        [
            "resume_attempt_at",
            "status",
            "next_trigger",
            "next_attempt_at",
            "enqueued_at",
            "leased_until",
            "lease_token",
        ],
        batch_size=500,
    )


# Ids per statement: PostgreSQL takes at most 65,535 parameters in one.
_PIECE = 10_000


def _pieces(ids: list[Any]) -> Iterable[list[Any]]:
    return (ids[start : start + _PIECE] for start in range(0, len(ids), _PIECE))


# A delivery whose webhook's body template failed on its event at fan-out: its body is empty
# and nothing of it was ever sent.
_NEVER_RENDERED = Q(status=DeliveryStatus.FAILED, last_error_kind=ErrorKind.TEMPLATE, attempts=0)


def _never_rendered(delivery: Delivery) -> bool:
    return (
        delivery.status == DeliveryStatus.FAILED
        and delivery.last_error_kind == ErrorKind.TEMPLATE
        and delivery.attempts == 0
    )


def bodies_render_again(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Render the body of each of these deliveries whose template failed at fan-out, with its
    webhook's settings of now, as fan-out does (the template was corrected, and the delivery is
    sent again); return the ids of those whose template still fails, their reason brought up
    to date. Call in the transaction that sends them again, the rows locked.

    Without this a delivery sent again after its template was corrected went out with its
    empty body, signed, and a receiver that accepted it made it "delivered". One rendering per
    delivery (each has its own event), so a cost only for deliveries that failed so.
    """
    failed: set[uuid.UUID] = set()
    for piece in _pieces(list(ids)):
        rows = list(
            Delivery.objects.filter(_NEVER_RENDERED, pk__in=piece)
            .select_related("event__school", "subscription")
            .defer("body")
        )
        rendered: list[Delivery] = []
        now = db_now()
        for row in rows:
            # Fan-out's own build: the same body, content type and profile, or the same reason.
            built = delivery_build(event=row.event, subscription=row.subscription, now=now)
            if built.status == DeliveryStatus.FAILED:
                failed.add(row.pk)
                row.last_error = built.last_error
            else:
                row.body, row.content_type, row.profile = (
                    built.body,
                    built.content_type,
                    built.profile,
                )
                row.last_error_kind = ErrorKind.NONE
                row.last_error = ""
                rendered.append(row)
        Delivery.objects.bulk_update(
            rendered, ["body", "content_type", "profile", "last_error_kind", "last_error"]
        )
        Delivery.objects.bulk_update([row for row in rows if row.pk in failed], ["last_error"])
    return failed


# Attempts asked for by a person: "send now" (at once, or within the limits for the rest of a
# large selection) and a recovery.
_BY_HAND = frozenset({AttemptTrigger.MANUAL, AttemptTrigger.RECOVERY})


def retrigger_schedule_resume(
    *, claim: Claim, result: TransportResult, now: dt.datetime
) -> dt.datetime | None:
    """When the automatic attempts of a delivery go on after its failed "send now", or None.

    Called by ``deliveries_record`` (record.py) for a failed attempt that schedules nothing:
    a manual attempt of a delivery that was waiting for an automatic one resumes that schedule
    (at the time it had, or now if that has passed), unless the failure is not worth retrying.
    """
    resume_at = claim.delivery.resume_attempt_at
    if claim.trigger not in _BY_HAND or resume_at is None:
        return None
    if not is_retryable(error_kind=result.error_kind, status=result.status):
        return None
    return max(resume_at, now)


def delivery_retrigger(*, delivery: Delivery, actor: Actor | None = None) -> RetriggerOutcome:
    """Send one delivery now, whatever its state; return what happened (see ``_redrive``).

    The attempt is logged as manual and carries the same ``webhook-id``. A delivered or failed
    delivery that fails again stays failed (no automatic retries follow); one that was waiting
    between automatic attempts keeps its schedule. Raises ``Delivery.DoesNotExist`` if it was
    deleted (with its webhook) since it was read.
    """
    result = _redrive(Delivery.objects.filter(pk=delivery.pk), actor=actor)
    outcomes = [outcome for outcome, n in result.counts.items() if n]
    if not outcomes:  # every row found has an outcome, in flight included
        raise Delivery.DoesNotExist(f"Delivery {delivery.pk} no longer exists.")
    [outcome] = outcomes
    return outcome


def deliveries_retrigger(
    *, delivery_ids: Iterable[uuid.UUID | str], actor: Actor | None = None
) -> RetriggerResult:
    """``delivery_retrigger`` for many; returns the count of each outcome."""
    return _redrive(list(delivery_ids), actor=actor)


def deliveries_recover(
    *, subscription: Subscription, since: dt.datetime, actor: Actor | None = None
) -> int:
    """Send again every failed delivery of the webhook created at or after ``since``; return how
    many.

    For after an outage: fix the endpoint, re-enable the webhook, recover (a disabled webhook
    gets nothing: 0). Each gets one more attempt, as a "send now" does, but they go as the
    webhook's own deliveries do: oldest first, within its concurrency, rate limit and circuit
    breaker. Sent all at once, thousands of them would flood a receiver that just came back
    and take every worker's send slots from the other schools' webhooks. However many there
    are, a few statements. Test deliveries are not re-sent. One audit entry for the recovery.
    """
    now = db_now()
    with transaction.atomic():  # the deliveries and their one audit entry together
        if not Subscription.objects.filter(pk=subscription.pk, is_active=True).exists():
            return 0
        # Those its template failed on are rendered with the template of now; any it still
        # fails on stay failed (their reason brought up to date) and are left out below.
        bodies_render_again(
            list(
                Delivery.objects.select_for_update(of=("self",))
                .filter(
                    _NEVER_RENDERED, subscription=subscription, created_at__gte=since, is_test=False
                )
                .values_list("pk", flat=True)
            )
        )
        if connection.vendor == "postgresql":
            ids = list(_failed_since(subscription, since).values_list("pk", flat=True))
            changed = _in_turn_wait(ids, now=now, statuses=[DeliveryStatus.FAILED])
            recovered = [pk for pk in ids if pk in changed]
        else:
            recovered = _recover_elsewhere(subscription, since=since, now=now)
        if recovered:
            audit_record(
                actor=actor,
                action=AuditAction.DELIVERIES_RECOVERED,
                school_id=subscription.school_id,
                object_type="webhook",
                object_id=subscription.pk,
                object_repr=subscription.name,
                changes={"since": since.isoformat(), "deliveries": len(recovered)},
            )
            # The oldest get a message; the claim takes what the limits allow and the rest
            # are taken up as attempts finish (or by the sweeper).
            after_commit(deliveries_enqueue, recovered[: settings.WEBHOOKS_DELIVERY_BATCH_SIZE])
    return len(recovered)


def _failed_since(subscription: Subscription, since: dt.datetime) -> QuerySet[Delivery]:
    """The webhook's failed deliveries created at or after ``since``, oldest first: those a
    recovery sends again (not Send Tests, nor those its template still fails on)."""
    return (
        Delivery.objects.filter(
            subscription=subscription,
            status=DeliveryStatus.FAILED,
            created_at__gte=since,
            is_test=False,
        )
        .exclude(_NEVER_RENDERED)
        .order_by("created_at", "id")
    )


def _recover_elsewhere(
    subscription: Subscription, *, since: dt.datetime, now: dt.datetime
) -> list[uuid.UUID]:
    """``_IN_TURN_SQL`` for the embedded SQLite (a demo's few rows)."""
    rows = list(_failed_since(subscription, since))
    _later_wait_elsewhere(rows, list(range(len(rows), 0, -1)), now=now)
    return [row.pk for row in rows]


@dataclass(frozen=True)
class PruneResult:
    deliveries: int
    events: int
    finished: bool  # False: the time was up with more to delete


def deliveries_prune(
    *, older_than_days: float, batch_size: int = 5000, seconds: float | None = None
) -> PruneResult:
    """Delete final deliveries (with their attempts) created more than ``older_than_days`` ago,
    and the events left without deliveries, oldest first, ``batch_size`` rows per transaction.

    Pending deliveries are kept whatever their age, and so are their events and the events not
    fanned out yet. Rows are deleted by their ids, without loading them (a delivery's body, an
    event's data) and with each cascade written out: a delivery's attempts, a scheduled event's
    link to the event it became (emptied, as ``SET_NULL`` says). Deliveries and events go in
    turns, so both keep up however much waits. With ``seconds``, stops between batches once
    that time is up (``finished`` is then False if rows remain): the task calls it again.
    Rows another pruner holds are skipped.
    """
    cutoff = timezone.now() - dt.timedelta(days=older_than_days)
    deadline = None if seconds is None else time.monotonic() + seconds
    deliveries = events = 0
    while True:
        batch_deliveries = _prune_deliveries_batch(cutoff, batch_size)
        batch_events = _prune_events_batch(cutoff, batch_size)
        deliveries += batch_deliveries
        events += batch_events
        if not batch_deliveries and not batch_events:
            return PruneResult(deliveries, events, finished=True)
        if deadline is not None and time.monotonic() >= deadline:
            return PruneResult(deliveries, events, finished=False)


def _prune_deliveries_batch(cutoff: dt.datetime, batch_size: int) -> int:
    with transaction.atomic():
        # Locked until the batch commits: one retriggered meanwhile waits, then finds it gone.
        ids = list(
            Delivery.objects.filter(created_at__lt=cutoff)
            .exclude(status=DeliveryStatus.PENDING)
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:batch_size]
        )
        if ids:
            DeliveryAttempt.objects.filter(delivery_id__in=ids)._raw_delete(connection.alias)
            Delivery.objects.filter(pk__in=ids)._raw_delete(connection.alias)
    return len(ids)


def _prune_events_batch(cutoff: dt.datetime, batch_size: int) -> int:
    without_deliveries = ~Exists(Delivery.objects.filter(event_id=OuterRef("pk")))
    with transaction.atomic():
        ids = list(
            Event.objects.filter(created_at__lt=cutoff, fanned_out_at__isnull=False)
            .filter(without_deliveries)
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return 0
        # Checked again by each statement: an event replayed since it was read keeps its new
        # delivery (the database's cascade would take that delivery with the event).
        gone = Event.objects.filter(without_deliveries, pk__in=ids)
        ScheduledEvent.objects.filter(event_id__in=gone.values("pk")).update(event=None)
        return gone._raw_delete(connection.alias)
