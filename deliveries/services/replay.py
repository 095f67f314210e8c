"""Replay: re-send a webhook's events of some types and/or a time range, whatever happened to
them before (delivered, failed, or never sent to this webhook), e.g. after a receiver lost its
data.

Each replayed event becomes a NEW delivery of the event to the webhook, numbered one past the
highest ``replay_number`` the pair has (fan-out's is 0), its body rendered now with the webhook's
current settings by fan-out's own ``delivery_build`` after fan-out's own ``delivery_wanted``
check, and enqueued after commit. The range is on the event's ``created_at`` (when it was
published, i.e. when the receiver first got it), not on ``occurred_at`` (the platform may
publish an event long after it happened). Events still awaiting fan-out are left out: fan-out
sends them anyway.

A replay counts first (``events_replay_count``, the dry run people confirm) and makes at most
``WEBHOOKS_REPLAY_MAX_EVENTS`` deliveries per request: a larger one is refused whole, never done
in part.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audit.models import AuditAction
from audit.services import Actor, audit_record
from common.clock import db_now
from common.transactions import after_commit
from events.models import Event, EventType
from subscriptions.models import Subscription
from subscriptions.selectors import replay_event_types

from ..models import Delivery, DeliveryStatus
from .fan_out import (
    deliveries_enqueue_selection,
    deliveries_insert,
    delivery_build,
    delivery_wanted,
)

logger = logging.getLogger(__name__)


class ReplayTooLarge(ValidationError):
    """More events than ``WEBHOOKS_REPLAY_MAX_EVENTS`` match: nothing was replayed."""


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay covers: the webhook, the event types (checked), the range."""

    subscription: Subscription
    event_types: list[str]
    since: dt.datetime | None
    until: dt.datetime | None


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: deliveries made, of which queued (the others could not be rendered
    with the webhook's body template and failed at once, as fan-out's would)."""

    count: int
    queued: int
    delivery_ids: list[uuid.UUID]

    @property
    def failed(self) -> int:
        return self.count - self.queued


def replay_plan(
    *,
    subscription: Subscription,
    event_types: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> ReplayPlan:
    """Check a replay's input and return it as a plan.

    ``event_types`` empty or None means every type the webhook receives (its topics match, the
    catalog's deprecated types included: old events of them can be replayed). ``since`` is
    inclusive, ``until`` exclusive. Raises ``ValidationError`` with every problem at once, by
    field: ``since`` not before ``until``; an unknown type; a type the webhook does not receive.
    """
    keys = set(EventType.objects.values_list("key", flat=True))
    received = replay_event_types(subscription=subscription)
    errors: dict[str, list[str]] = {}
    chosen = list(dict.fromkeys(event_types or []))
    unknown = [key for key in chosen if key not in keys]
    if unknown:
        errors.setdefault("event_types", []).append(
            ngettext(
                "Unknown event type: %(types)s.",
                "Unknown event types: %(types)s.",
                len(unknown),
            )
            % {"types": ", ".join(unknown)}
        )
    foreign = [key for key in chosen if key in keys and key not in received]
    if foreign:
        errors.setdefault("event_types", []).append(
            ngettext(
                "The webhook does not receive %(types)s: replay only types it receives.",
                "The webhook does not receive these types: %(types)s. Replay only types it "
                "receives.",
                len(foreign),
            )
            % {"types": ", ".join(foreign)}
        )
    if since is not None and until is not None and since >= until:
        errors.setdefault("until", []).append(_("“Until” must be after “since”."))
    if errors:
        raise ValidationError(errors)
    return ReplayPlan(
        subscription=subscription, event_types=chosen or received, since=since, until=until
    )


def events_replayable(*, plan: ReplayPlan) -> QuerySet[Event]:
    """The events a replay plan covers, before the webhook's own per-event rule: the webhook's
    school's published events (not Send Test samples) of the plan's types in its range, fanned
    out already; oldest first."""
    events = Event.objects.filter(
        school_id=plan.subscription.school_id,
        type_id__in=plan.event_types,
        is_test=False,
        fanned_out_at__isnull=False,
    )
    if plan.since is not None:
        events = events.filter(created_at__gte=plan.since)
    if plan.until is not None:
        events = events.filter(created_at__lt=plan.until)
    return events.order_by("created_at", "id")


def _events_wanted(plan: ReplayPlan) -> list[Event]:
    """The plan's events the webhook gets (``delivery_wanted``, as fan-out decides), loaded;
    raises ``ReplayTooLarge`` when more than the cap are even candidates."""
    limit = settings.WEBHOOKS_REPLAY_MAX_EVENTS
    events = events_replayable(plan=plan).select_related("school")
    candidates = list(events[: limit + 1])
    if len(candidates) > limit:
        raise ReplayTooLarge(
            {
                "__all__": [
                    _(
                        "More than %(limit)s events match: a replay sends at most %(limit)s. "
                        "Narrow the range (a later “since”, an earlier “until”, fewer types) "
                        "and replay it in parts."
                    )
                    % {"limit": number_format(limit, force_grouping=True)}
                ]
            }
        )
    return [
        event
        for event in candidates
        if delivery_wanted(event=event, subscription=plan.subscription)
    ]


def events_replay_count(*, plan: ReplayPlan) -> int:
    """How many deliveries ``deliveries_replay`` would make for the plan now (the dry run).

    Raises ``ReplayTooLarge`` when more than ``WEBHOOKS_REPLAY_MAX_EVENTS`` events match.
    """
    return len(_events_wanted(plan))


def _events_held(events: list[Event]) -> list[Event]:
    """The ``events`` that still exist, each held until the transaction ends (``FOR KEY
    SHARE``). The prune deletes old events left without deliveries: it passes over the ones held
    (it skips locked rows), and one it was deleting when the replay read it is waited for and
    left out, rather than given a delivery the database refuses at the commit."""
    if connection.vendor != "postgresql" or not events:
        return events
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Event._meta.db_table} WHERE id = ANY(%s) FOR KEY SHARE",  # noqa: S608
            [[event.pk for event in events]],
        )
        present = {row[0] for row in cursor.fetchall()}
    return [event for event in events if event.pk in present]


_REPLAY_LOCK_CLASS = 0x57484D


def _webhook_hold(pk: uuid.UUID) -> Subscription:
    """The webhook, held until the transaction ends: its replays one at a time (an advisory
    lock: their numbers never collide) and the row kept (``FOR KEY SHARE``: it cannot be
    deleted under the new deliveries). Not ``FOR UPDATE``: rendering thousands of bodies takes
    a while, and the recorder, which starts and ends failure streaks on webhook rows for every
    school's results in one statement, would wait for it. Raises ``DoesNotExist``."""
    if connection.vendor != "postgresql":
        return Subscription.objects.select_for_update().get(pk=pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", [_REPLAY_LOCK_CLASS, pk]
        )
    rows = list(
        Subscription.objects.raw(
            "SELECT * FROM subscriptions_subscription WHERE id = %s FOR KEY SHARE", [pk]
        )
    )
    if not rows:
        raise Subscription.DoesNotExist(f"Webhook {pk} no longer exists.")
    return rows[0]


def deliveries_replay(*, plan: ReplayPlan, actor: Actor | None) -> ReplayResult:
    """Replay the plan's events to its webhook: one new delivery per event, enqueued after commit.

    Not idempotent by design: each call re-sends (replay numbers 1, 2, ...). Replays of one
    webhook run one at a time (its row is locked), so numbers never collide. Raises
    ``ValidationError`` for a disabled webhook (nothing is sent to it: re-enable it first) and
    ``ReplayTooLarge`` past the cap, and ``Subscription.DoesNotExist`` for a webhook deleted
    since the plan was made; in each case nothing is written. One audit entry.
    """
    subscription = plan.subscription
    with transaction.atomic():
        locked = _webhook_hold(subscription.pk)
        if not locked.is_active:
            raise ValidationError(
                _("The webhook is disabled: re-enable it, then replay its events.")
            )
        events = _events_held(_events_wanted(plan))
        numbers = dict(
            Delivery.objects.filter(subscription=subscription, event__in=[e.pk for e in events])
            .order_by()
            .values("event_id")
            .annotate(last=Max("replay_number"))
            .values_list("event_id", "last")
        )
        now = db_now()
        deliveries = []
        for event in events:
            delivery = delivery_build(event=event, subscription=locked, now=now)
            previous = numbers.get(event.pk)
            delivery.replay_number = 1 if previous is None else previous + 1
            deliveries.append(delivery)
        deliveries_insert(deliveries)
        pending = [d.id for d in deliveries if d.status == DeliveryStatus.PENDING]
        audit_record(
            actor=actor,
            action=AuditAction.DELIVERIES_REPLAYED,
            school_id=subscription.school_id,
            object_type="webhook",
            object_id=subscription.pk,
            object_repr=subscription.name,
            changes={
                "event_types": plan.event_types,
                "since": plan.since.isoformat() if plan.since else None,
                "until": plan.until.isoformat() if plan.until else None,
                "deliveries": len(deliveries),
            },
        )
        if pending:
            after_commit(deliveries_enqueue_selection, pending)
    logger.info(
        "Replayed %d events to webhook %s (%d queued)",
        len(deliveries),
        subscription.pk,
        len(pending),
    )
    return ReplayResult(
        count=len(deliveries), queued=len(pending), delivery_ids=[d.id for d in deliveries]
    )
