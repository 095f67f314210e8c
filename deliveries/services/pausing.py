"""Pausing a webhook and catching up after it.

A school pauses its webhook for a maintenance window: the webhook stays active (``is_active``
is the system's or an admin's "disabled", which creates nothing), its events still become
deliveries, and those are held: the claim (``claim.py``) sends none of them automatically (Send
Test and "send now" still go). Resuming, by hand or at ``resume_at`` (the sweeper), releases
what was held in the order the events were published: each held delivery's ``next_attempt_at``
is set, just before the pause began, in that order, and the webhook catches up one delivery at a
time, its head first, under its rate limit. When nothing waits any more the catch-up ends and
the webhook's concurrency applies again.

"In order" is the order of first attempts: a held delivery whose attempt fails does not hold
the others back; they go on, one at a time, and its retry goes once the held ones have all gone
(the catch-up lets only its head through, whatever else is due). Each held
delivery's retry window does not run while it is held: it starts at its first attempt (the
claim sets it; a long catch-up does not eat into it), or moves by the pause's length for one
that was already retrying when the pause began.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import Actor, audit_record
from common.clock import db_now
from common.sql import Written
from common.transactions import after_commit
from subscriptions.models import Subscription

from ..models import AttemptTrigger, Delivery, DeliveryStatus
from ..selectors import webhooks_held_by_circuit
from .fan_out import deliveries_enqueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumeResult:
    """What resuming did: whether the webhook was paused, and how many deliveries it held."""

    resumed: bool
    held: int = 0


def subscription_pause(
    *, subscription: Subscription, until: dt.datetime | None = None, actor: Actor | None = None
) -> bool:
    """Pause the webhook (until ``until`` if given, else until it is resumed); return whether
    anything changed.

    Its events keep becoming deliveries, held until it resumes; deliveries already in flight
    finish. A paused webhook is never disabled for its failure streak. Idempotent: pausing a
    paused webhook only changes when it resumes (None: by hand). A catch-up in progress stops
    where it is and starts again at the next resume. Audited. Raises ``ValidationError``
    (``resume_at``) for an ``until`` that is not in the future.
    """
    now = db_now()
    if until is not None and until <= now:
        raise ValidationError({"resume_at": [_("The time to resume must be in the future.")]})
    with transaction.atomic():
        current = (
            Subscription.objects.select_for_update()
            .filter(pk=subscription.pk)
            .values_list("paused_at", "resume_at")
            .first()
        )
        if current is None:
            return False
        paused_at, resume_at = current
        if paused_at is not None and resume_at == until:
            return False
        Subscription.objects.filter(pk=subscription.pk).update(
            paused_at=paused_at or now,
            resume_at=until,
            catching_up_since=None,
            updated_at=now,
        )
        changes: dict[str, object] = {"resume_at": [_iso(resume_at), _iso(until)]}
        if paused_at is None:
            changes["paused"] = [False, True]
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_PAUSED,
            school_id=subscription.school_id,
            object_type="webhook",
            object_id=subscription.pk,
            object_repr=subscription.name,
            changes=changes,
        )
    subscription.refresh_from_db(fields=["paused_at", "resume_at", "catching_up_since"])
    return True


def subscription_resume(
    *, subscription: Subscription, actor: Actor | None = None, due_by: dt.datetime | None = None
) -> ResumeResult:
    """Resume a paused webhook: what it held goes out, oldest event first, one at a time.

    The held deliveries (due, pending, automatic) are ordered by their events' publication and
    the first gets a message after commit; the webhook is marked catching up (if it held any)
    and its failure streak starts afresh. Idempotent: a webhook that is not paused is left as
    it is (``resumed`` False). Audited. ``due_by`` (the sweeper): only if its resume time has
    come by then, as the locked row has it (the school may have moved it meanwhile).
    """
    now = db_now()
    with transaction.atomic():
        locked = Subscription.objects.select_for_update().filter(
            pk=subscription.pk, paused_at__isnull=False
        )
        if due_by is not None:
            locked = locked.filter(resume_at__lte=due_by)
        paused_at = locked.values_list("paused_at", flat=True).first()
        if paused_at is None:
            return ResumeResult(resumed=False)
        _retry_windows_move(subscription.pk, paused_at=paused_at, now=now)
        head, held = _held_order(subscription.pk, now=now, start=paused_at)
        Subscription.objects.filter(pk=subscription.pk).update(
            paused_at=None,
            resume_at=None,
            catching_up_since=now if held else None,
            failing_since=None,
            updated_at=now,
        )
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_RESUMED,
            school_id=subscription.school_id,
            object_type="webhook",
            object_id=subscription.pk,
            object_repr=subscription.name,
            changes={"paused": [True, False], "held_deliveries": held},
        )
        if head is not None:
            after_commit(deliveries_enqueue, [head])
    logger.info("Webhook %s resumed; %d held deliveries to catch up", subscription.pk, held)
    subscription.refresh_from_db(
        fields=["paused_at", "resume_at", "catching_up_since", "failing_since"]
    )
    return ResumeResult(resumed=True, held=held)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _retry_windows_move(
    subscription_id: uuid.UUID, *, paused_at: dt.datetime, now: dt.datetime
) -> None:
    """The pause does not count against the retry windows of the webhook's pending deliveries:
    one created during the pause starts its window now, an older one's moves by the pause."""
    start = Coalesce(F("retry_window_start_at"), F("created_at"))
    Delivery.objects.filter(
        subscription_id=subscription_id, status=DeliveryStatus.PENDING, is_test=False
    ).update(
        retry_window_start_at=Case(
            When(created_at__gt=paused_at, then=Value(now)),
            default=start + Value(now - paused_at),
            output_field=DateTimeField(),
        )
    )


# Due held deliveries of one webhook, in their events' publication order, each due a
# microsecond after the one before it and the last one just before the pause began: the claim's
# order (``next_attempt_at``) is then the events' order, and anything that becomes a delivery
# later sorts after them (even one fanned out while the resume committed, which was due when
# it was made, after the pause began).
_HELD_ORDER_SQL = """
WITH held AS (
    SELECT d.id, row_number() OVER (ORDER BY e.created_at DESC, e.id DESC) AS place
    FROM deliveries_delivery AS d JOIN events_event AS e ON e.id = d.event_id
    WHERE d.subscription_id = %(webhook)s AND d.status = 'pending' AND NOT d.is_test
      AND d.next_trigger = 'automatic' AND d.next_attempt_at <= %(now)s
      AND (d.leased_until IS NULL OR d.leased_until < %(now)s)
)
UPDATE deliveries_delivery AS d
SET next_attempt_at = %(start)s - held.place * interval '1 microsecond', enqueued_at = NULL
FROM held WHERE d.id = held.id
RETURNING d.id, held.place
"""


def _held_order(
    subscription_id: uuid.UUID, *, now: dt.datetime, start: dt.datetime
) -> tuple[uuid.UUID | None, int]:
    """Line up the webhook's held deliveries before ``start`` (see ``_HELD_ORDER_SQL``) without
    a message each; return the first of them and how many there are."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _HELD_ORDER_SQL, {"webhook": subscription_id, "now": now, "start": start}
            )
            rows = cursor.fetchall()
        if not rows:
            return None, 0
        head = max(rows, key=lambda row: row[1])[0]
        return head, len(rows)
    held = list(
        Delivery.objects.filter(
            subscription_id=subscription_id,
            status=DeliveryStatus.PENDING,
            is_test=False,
            next_trigger=AttemptTrigger.AUTOMATIC,
            next_attempt_at__lte=now,
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("event__created_at", "event_id")
        .only("pk")
    )
    for place, delivery in enumerate(held):
        delivery.next_attempt_at = start - dt.timedelta(microseconds=len(held) - place)
        delivery.enqueued_at = None
    Delivery.objects.bulk_update(held, ["next_attempt_at", "enqueued_at"], batch_size=500)
    return (held[0].pk if held else None), len(held)


def subscriptions_resume_due(*, now: dt.datetime | None = None) -> int:
    """Resume every webhook whose automatic resume time has come (the sweeper); return how
    many resumed. Safe to run from several sweepers at once (``subscription_resume`` is)."""
    now = now or db_now()
    due = Subscription.objects.filter(paused_at__isnull=False, resume_at__lte=now).order_by(
        "resume_at"
    )
    resumed = 0
    for subscription in due[:500]:
        if subscription_resume(subscription=subscription, due_by=now).resumed:
            resumed += 1
    return resumed


def catch_ups_drive(*, now: dt.datetime | None = None) -> int:
    """Keep catch-ups going (the sweeper); return how many were restarted or ended.

    A catch-up older than ``WEBHOOKS_REDRIVE_AFTER_SECONDS`` with nothing in flight lost its
    chain of attempts (a worker stopped, a message was lost): its head gets a message. One
    that is only between two attempts may get one too, which costs a message and nothing else:
    the claim lets only the head through, one at a time. (Telling the two apart by a recent
    attempt read the webhook's whole delivery log at every sweep: no index has the time of
    the last attempt.) One with nothing in flight and nothing waiting is over. A webhook whose
    circuit is open is left to its probe (``redrive._probes_send``): a message would only be
    refused until then; unless it is disabled (it gets no probe; its deliveries are refused
    without a request).
    """
    now = now or db_now()
    stale = now - dt.timedelta(seconds=settings.WEBHOOKS_REDRIVE_AFTER_SECONDS)
    in_flight = Delivery.objects.filter(
        subscription_id=OuterRef("pk"),
        status=Written(DeliveryStatus.PENDING),
        leased_until__gte=now,
    )
    broken = webhooks_held_by_circuit()
    idle = (
        Subscription.objects.filter(catching_up_since__isnull=False)
        .filter(~Exists(in_flight))
        .exclude(pk__in=broken)
        .values_list("pk", "catching_up_since")[:500]
    )
    heads: list[uuid.UUID] = []
    ended: list[uuid.UUID] = []
    for pk, since in idle:
        head = None if since is None else catch_up_head(subscription_id=pk, since=since, now=now)
        if head is None:
            ended.append(pk)
        elif since is not None and since < stale:
            heads.append(head)
    over = _catch_ups_end(ended) if ended else 0
    if heads:
        logger.info("Restarting %d stalled catch-ups", len(heads))
        deliveries_enqueue(heads)
    return len(heads) + over


def _catch_ups_end(candidates: list[uuid.UUID]) -> int:
    """End the catch-ups among ``candidates`` that are over, checked again under the webhooks'
    claim locks: a claim may have taken the last held delivery since they were read (it is in
    flight: the catch-up goes on until it is done), or the webhook paused and resumed again."""
    from .claim import endpoints_lock  # claim.py imports this module

    with transaction.atomic():
        endpoints_lock(candidates)
        now = db_now()
        in_flight = Delivery.objects.filter(
            subscription_id=OuterRef("pk"),
            status=Written(DeliveryStatus.PENDING),
            leased_until__gte=now,
        )
        rows = (
            Subscription.objects.filter(pk__in=candidates, catching_up_since__isnull=False)
            .filter(~Exists(in_flight))
            .values_list("pk", "catching_up_since")
        )
        over = 0
        for pk, since in rows:
            if (
                since is not None
                and catch_up_head(subscription_id=pk, since=since, now=now) is None
            ):
                # Not a catch-up that a pause and resume began since the read.
                over += Subscription.objects.filter(pk=pk, catching_up_since=since).update(
                    catching_up_since=None
                )
    return over


def catch_up_head(
    *, subscription_id: uuid.UUID, since: dt.datetime, now: dt.datetime
) -> uuid.UUID | None:
    """The delivery a webhook catching up since ``since`` sends next: of those it held (lined
    up before the resume, ``_held_order``; what became due later is not part of the catch-up),
    the waiting one due first. The claim's PostgreSQL query (``claim._HEAD_SQL``) says the
    same in SQL."""
    return (
        Delivery.objects.filter(
            subscription_id=subscription_id,
            status=Written(DeliveryStatus.PENDING),  # the index's condition: any plan uses it
            enqueued_at__isnull=True,
            next_attempt_at__lte=now,
            next_attempt_at__lt=since,
            is_test=False,
            next_trigger=AttemptTrigger.AUTOMATIC,
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)
        .first()
    )
