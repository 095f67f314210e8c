"""Claiming due deliveries: one conditional UPDATE takes the lease, so a duplicate task message
sends nothing and any number of workers share the rows without sending one twice.

A claim also keeps each webhook within its limits. Under a per-webhook lock (a PostgreSQL
advisory lock held to the end of the transaction, so claims for one webhook never race) it
counts the webhook's deliveries in flight (leased), checks its circuit breaker and its rate
budget, and takes only what fits. The rest is left waiting without a task message
(``enqueued_at`` cleared): the attempts in flight take it up when they finish (the statement
that records an answered attempt hands its slot to the oldest waiting delivery, "Handing a slot
over" below; what it cannot hand over, ``deliveries_claim_waiting`` takes up under the lock), a
probe reopens a broken circuit, and the sweeper re-drives what nobody will (``redrive.py``).
A worker process's claims also keep its attempts to failing receivers within
``WEBHOOKS_FAILING_CONCURRENCY`` (``FailingRoom``): the retries and probes of webhooks whose
receivers fail on the network, and the deliveries to a receiver host whose last attempt in the
process failed so (or that has left its requests there unanswered for a while), cannot take
every send thread when many receivers are down at once. What it
holds back waits as above, for the webhook's attempts in flight, its probe, or the sweeper.
Send Test and manual retriggers are asked for by a person: they go whatever the limits, and a
delivery sent now by hand counts as in flight from the moment it is sent (``redrive.py`` gives
it a free slot), not only once a worker takes it up.

A paused webhook's automatic deliveries are all held (left waiting). A webhook catching up after
a pause (``pausing.py``) sends one at a time, and only its head: the waiting delivery due first
(``next_attempt_at``, which resuming set in the events' order), so the held deliveries arrive
oldest first and nothing overtakes them. A claim that finds the head left behind, with nothing
of the webhook in flight, sends it a message; one that finds no head ends the catch-up.

On PostgreSQL a claim is a handful of statements whatever its size: the candidates, the lock,
one read of the webhooks' limits and state, and one ``UPDATE ... RETURNING`` that hands back
the rows. What a request needs of a webhook (URL, headers, credentials, secrets) is kept per
process and reloaded when the webhook's ``updated_at`` or its count of signing secrets moves.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    Prefetch,
    Q,
    QuerySet,
    UUIDField,
    Value,
    When,
)

from common.clock import db_now
from common.sql import (
    WriteAlong,
    fields_in_order,
    models_from_rows,
    rows_update,
    with_along,
)
from common.transactions import after_commit, transaction_committed, transaction_own
from schools.models import School
from subscriptions.models import SigningSecret, Subscription
from webhook_engine.destinations import receiver_host
from webhook_engine.errors import NETWORK_FAILURES, ErrorKind
from webhook_engine.transport import TransportResult

from ..models import (
    AttemptTrigger,
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
)
from ..redaction import request_url_capped
from .fan_out import deliveries_enqueue
from .pausing import catch_up_head

logger = logging.getLogger(__name__)

# The advisory lock space of per-webhook claims (any int4 that nothing else uses).
_ENDPOINT_LOCK_CLASS = 0x57484B
_BYPASS_LIMITS = frozenset({AttemptTrigger.TEST, AttemptTrigger.MANUAL})
# The delivery columns a claim returns, in this order.
_COLUMNS = (
    "id",
    "school_id",
    "event_id",
    "subscription_id",
    "event_type",
    "is_test",
    "body",
    "content_type",
    "profile",
    "status",
    "attempts",
    "next_trigger",
    "created_at",
    "next_attempt_at",
    "enqueued_at",
    "leased_until",
    "lease_token",
    "last_attempt_at",
    "resume_attempt_at",
    "retry_window_start_at",
)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds the lease on, and the attempt it is about to make."""

    delivery: Delivery
    number: int
    token: uuid.UUID
    started_at: dt.datetime
    trigger: str
    # The webhook's circuit breaker as this claim left it, and its network failures in a row.
    circuit: str = CircuitState.CLOSED
    failures: int = 0
    # Other deliveries of the webhook may wait for its slots: take them up when this one is done.
    waiting_behind: bool = False
    # Its webhook was catching up after a pause (one at a time) when this was claimed.
    catching_up: bool = False
    # Claimed within its process's room for attempts to failing receivers (``FailingRoom``).
    failing: bool = False

    @property
    def probe(self) -> bool:
        """Whether this attempt is its circuit's probe: claimed while the circuit is half-open,
        through the limits. A Send Test or a manual send goes whatever the circuit, and a
        disabled webhook's deliveries are refused without a request: neither is the probe."""
        return (
            self.circuit == CircuitState.HALF_OPEN
            and self.trigger not in _BYPASS_LIMITS
            and self.delivery.subscription.is_active
        )


@dataclass
class FailingRoom:
    """A worker process's room for attempts to failing receivers: webhooks with network
    failures in a row or a circuit that is not closed (its probe), and webhooks whose receiver
    host (``receiver_host``) is in ``hosts_down`` (its last attempt in the process failed on the
    network, or its requests there have had no answer for a while: a host gone down, whose other
    webhooks are likely down too). ``in_flight`` of them are in flight in the process (with the
    attempts to those hosts claimed before they failed), at most ``limit``; a claim admits
    such a delivery only while there is room, counting what it admits itself. The counts are the
    process's when it began the claim: claims running at once in one process may together go a
    little over."""

    limit: int
    in_flight: int
    hosts_down: frozenset[str] = frozenset()
    taken: int = 0
    held: int = 0  # deliveries of failing receivers held back for want of room

    def full(self) -> bool:
        return self.in_flight + self.taken >= self.limit

    def has_room(self) -> bool:
        """Whether one more fits (counting one held back if not)."""
        if not self.full():
            return True
        self.held += 1
        return False


@dataclass
class ClaimOutcome:
    """What a claim took, and what it left.

    ``waiting``: due deliveries its webhook's limits did not let go now (left without a
    message, see the module docstring); ``woken``: those of them that a rate limit held back,
    which get a message for ``retry_at``, when the first such webhook has budget again (if
    soon enough for a message). The others wait for what takes them up without one: an
    attempt of their webhook ending, its probe (``record._probes_schedule``, the sweeper), or
    the sweeper; a message for each of them would be claimed only to leave them waiting again
    (an open circuit's backlog sent round at every probe). ``unclaimed``: due deliveries left
    only because ``capacity`` ran out (their message is still the caller's).
    """

    claims: list[Claim] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)
    retry_at: dt.datetime | None = None
    unclaimed: list[str] = field(default_factory=list)
    # Of a fan-out's deliveries past those it claims (``deliveries_claim_inserted``'s
    # ``rest``), those that stay waiting, with no message.
    rest_waiting: list[str] = field(default_factory=list)
    # How many deliveries to failing receivers waited for room in the process (``FailingRoom``).
    failing_held: int = 0
    # The claim's plan, for a claim whose commit is its caller's (``claim_committed_after_loss``).
    plan: _Plan | None = field(default=None, repr=False)


def deliveries_claim(
    *,
    delivery_ids: list[str],
    capacity: int | None = None,
    renewed: bool = False,
    waiting: bool = False,
    failing: FailingRoom | None = None,
) -> ClaimOutcome:
    """Take the lease on the due, unclaimed deliveries among ``delivery_ids`` that their
    webhooks' limits let go now, at most ``capacity`` of them (and, with ``failing``, those to
    failing receivers as far as the caller's process has room for them).

    The lease lasts ``WEBHOOKS_LEASE_SECONDS`` for a caller that renews it while the attempt is
    in flight (``renewed``: the dispatcher), the attempt's deadline more for one that does not.

    One conditional UPDATE marks the rows this call won with a fresh lease token; any number of
    workers racing for the same rows each win a disjoint set. A row whose previous lease ran out
    without a result gets that lost attempt logged as interrupted. Claims are returned in the
    order of ``delivery_ids``.

    ``waiting``: the deliveries wait without a message already (fan-out stores those it sends
    from its own process so): what the limits hold back stays as it is, and what goes counts
    as taken up, not as a delivery with a message of its own.
    """
    now = db_now()

    def decide() -> _Decided:
        candidates = _due_candidates(delivery_ids, now)
        return _claim(
            candidates,
            now=now,
            capacity=capacity,
            park=not waiting,
            lease=_lease_length(renewed),
            failing=failing,
        )

    outcome, rows, plan = _claim_commit(decide)
    outcome.claims = _in_order(_claims_build(rows, plan, now), delivery_ids)
    return outcome


def _in_order(claims: list[Claim], delivery_ids: Sequence[uuid.UUID | str]) -> list[Claim]:
    """``claims`` in the order of their deliveries in ``delivery_ids``."""
    order = {str(delivery_id): index for index, delivery_id in enumerate(delivery_ids)}
    return sorted(claims, key=lambda claim: order.get(str(claim.delivery.pk), 0))


def deliveries_claim_inserted(
    *,
    deliveries: list[Delivery],
    capacity: int,
    failing: FailingRoom | None = None,
    rest: list[Delivery] | None = None,
    along: WriteAlong | None = None,
) -> ClaimOutcome:
    """Lease, in the caller's transaction that has just inserted ``deliveries`` (the fan-out's),
    those their webhooks' limits let go now, at most ``capacity``: what ``deliveries_claim``
    with ``waiting`` does after that commit, without a transaction of its own (its commit, and
    the flush to the disk that comes with it) and without reading back the rows the caller
    has in hand. What the limits hold back stays waiting, as it was stored.

    A webhook whose older deliveries wait for its slots sends those first: the slots free now
    go to the oldest waiting, as a take-up's do, not to the new ones, which would otherwise
    overtake them at every fan-out while the older ones went one take-up at a time. The
    claims may then be of deliveries not among ``deliveries``.

    ``rest``: the fan-out's other deliveries, which it sends messages for after the commit.
    Those that the limits of their webhooks would only leave waiting now (``_Plan.holds``)
    are listed in ``rest_waiting`` instead, to be stored waiting with no message: a
    message's claim would leave them so, at the cost of a claim each (a hundred hanging
    receivers, each at its concurrency, and every event for them). The attempts in flight or
    the probe that their webhook waits for take them up, as they take up what a claim leaves
    waiting. Their webhooks are read, not locked: a fan-out holds no more locks than its
    claim's, and an attempt that ends before the commit without seeing them leaves them to
    the other attempts in flight, or, if it was the last, to the sweeper. Not read beyond
    ``_REST_WEBHOOKS_MAX`` webhooks (the first sends wait for the read): their messages go as
    before.

    ``along``: the caller's write, sent with the lock of the webhooks (``WriteAlong``: the
    fan-out's mark of its events), unless no lock was taken.

    The caller commits before anything is sent. If the answer to its commit is lost with the
    connection, ``claim_committed_after_loss`` tells whether it went through.
    """
    now = db_now()
    candidates = [
        (delivery.pk, delivery.subscription_id, delivery.next_trigger) for delivery in deliveries
    ]
    after = [
        (delivery.pk, delivery.subscription_id, delivery.next_trigger) for delivery in rest or []
    ]
    if len({subscription_id for _pk, subscription_id, _trigger in after}) > _REST_WEBHOOKS_MAX:
        after = []
    outcome, rows, plan = _claim(
        candidates,
        now=now,
        capacity=capacity,
        park=False,
        lease=_lease_length(True),
        oldest_first=True,
        failing=failing,
        rest=after,
        along=along,
    )
    claims = _claims_build(rows, plan, now)
    outcome.claims = _in_order(claims, [delivery.pk for delivery in deliveries])
    outcome.plan = plan
    return outcome


# A fan-out's deliveries past those it claims are looked at (``deliveries_claim_inserted``)
# for at most this many webhooks: the webhooks' read costs about 0.1 ms each, in the fan-out's
# transaction, before its first sends.
_REST_WEBHOOKS_MAX = 200


def claim_committed_after_loss(outcome: ClaimOutcome) -> bool:
    """Whether the caller's transaction that made a claim (``deliveries_claim_inserted``)
    committed, when the answer to its commit was lost with the connection (asked on a new
    one); if it did, what the claim had to do after the commit is done now. False when nothing
    was leased, or when the database cannot tell yet: the leases then run out, as after a
    worker's death."""
    return _plan_committed_after_loss(outcome.plan)


def _due_candidates(
    delivery_ids: list[str], now: dt.datetime
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """The due, unclaimed deliveries among ``delivery_ids``, locked, due first; rows another
    worker holds are passed over. On PostgreSQL one fixed statement: building the same query
    with the ORM cost about as much as the rest of a one-delivery claim."""
    if connection.vendor == "postgresql":
        return _candidates_fetch(
            "SELECT id, subscription_id, next_trigger FROM deliveries_delivery "
            "WHERE id = ANY(%s::uuid[]) AND status = %s AND next_attempt_at <= %s "
            "AND (leased_until IS NULL OR leased_until < %s) "
            "ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED",
            [[str(pk) for pk in delivery_ids], DeliveryStatus.PENDING.value, now, now],
        )
    return list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=delivery_ids, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at", "id")
        .values_list("pk", "subscription_id", "next_trigger")
    )


def _candidates_fetch(sql: str, params: list[Any]) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """Rows of (delivery id, webhook id, trigger) from a fixed statement (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]  # type: ignore[misc]


def deliveries_claim_waiting(
    *,
    freed: Mapping[uuid.UUID, int],
    now: dt.datetime | None = None,
    failing: FailingRoom | None = None,
) -> ClaimOutcome:
    """Take up deliveries that waited for a slot of the webhooks in ``freed`` (each with how
    many of its attempts just finished), oldest first, as their limits allow: at most that
    many per webhook. What a worker does when its attempts to those webhooks are done,
    instead of waiting for a message.

    Each webhook gets its own share: the oldest waiting deliveries of another webhook in the
    same batch cannot use up the candidates or the slots, which would leave this webhook's
    waiting deliveries with no attempt in flight to take them up (only the sweeper would).
    """
    now = now or db_now()
    freed = {endpoint: count for endpoint, count in freed.items() if count > 0}
    if not freed:
        return ClaimOutcome()

    def decide() -> _Decided:
        # The webhooks' locks first: a claim that is leaving deliveries of one of them
        # waiting (it saw the slots these attempts just freed still taken) commits before
        # this reads, so its deliveries are seen here rather than skipped as locked rows.
        endpoints_lock(list(freed), claiming=True)
        candidates = _waiting_candidates(freed, now)
        return _claim(
            candidates,
            now=now,
            capacity=sum(freed.values()),
            park=False,
            lease=_lease_length(True),
            locked=True,
            quota=freed,
            failing=failing,
        )

    outcome, rows, plan = _claim_commit(decide)
    outcome.claims = _claims_build(rows, plan, now)
    return outcome


# What a claim decided: its outcome, the rows it leased (``_COLUMNS``) and its plan.
_Decided = tuple[ClaimOutcome, list[tuple[Any, ...]], "_Plan | None"]


def _claim_commit(decide: Callable[[], _Decided]) -> _Decided:
    """Run a claim (``decide``) in a transaction and commit it.

    The connection may be lost at the commit (a database restart at that moment): the commit
    may then have gone through with its answer lost. The claim finds out which from the
    transaction's id (noted by the statement that leased the rows): if it committed, what it
    leased is returned to be sent at once, rather than left leased and unsent until the lease
    runs out and then logged as an interrupted attempt that was never made. Otherwise, or if
    the database cannot tell yet, the error is raised (nothing was leased, or the lease runs
    out as after a worker's death) and the caller's task retries.
    """
    own = connection.vendor == "postgresql" and not connection.in_atomic_block
    decided: _Decided | None = None
    try:
        with transaction.atomic():
            decided = decide()
        return decided
    except (OperationalError, InterfaceError):
        if decided is None or not own:
            raise  # lost before the commit, or the commit is the caller's
        plan = decided[2]
        if not _plan_committed_after_loss(plan):
            raise
        logger.warning(
            "The claim of %d deliveries committed but its answer was lost with the "
            "connection; they are sent",
            len(plan.chosen) if plan else 0,
        )
        return decided


def _plan_committed_after_loss(plan: _Plan | None) -> bool:
    """Whether the transaction that leased ``plan``'s deliveries committed, when its commit's
    answer was lost with the connection; if it did, what the claim had to do after the commit
    is done now. False when nothing was leased, or when the database cannot tell yet."""
    if plan is None or plan.txid is None or not _committed_after_loss(plan.txid):
        return False
    plan.after_commit_lost()
    return True


def _committed_after_loss(txid: int) -> bool:
    """Whether transaction ``txid`` committed, asked on a new connection (the old one is
    lost); False if the database cannot be reached to tell."""
    connection.close()
    try:
        return transaction_committed(txid)
    except (OperationalError, InterfaceError):
        return False


def _waiting_candidates(
    freed: Mapping[uuid.UUID, int], now: dt.datetime
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """Up to four times its share of each webhook's waiting deliveries (some may not go: a
    rate limit, a probe), locked, oldest first; rows another worker holds are passed over."""
    if connection.vendor == "postgresql":
        return _candidates_fetch(_WAITING_SQL, [list(freed), list(freed.values()), now, now])
    waiting = waiting_due(now).select_for_update(skip_locked=True, of=("self",))
    found: list[tuple[Any, ...]] = []
    for endpoint, share in freed.items():
        found += waiting.filter(subscription_id=endpoint).values_list(
            "next_attempt_at", "id", "pk", "subscription_id", "next_trigger"
        )[: share * 4]
    return [row[2:] for row in sorted(found, key=lambda row: row[:2])]


def waiting_due(now: dt.datetime) -> QuerySet[Delivery]:
    """The deliveries that wait for their webhook's slots without a message and are due now,
    oldest first (the ORM's form of ``_WAITING_SQL``'s conditions): not in flight, and not a
    Send Test, which the request that made it sends."""
    return (
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING,
            enqueued_at__isnull=True,
            next_attempt_at__lte=now,
            is_test=False,
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at", "id")
    )


# Each webhook's waiting deliveries in the order of ``delivery_waiting_in_order_idx``, which
# the scan follows: it reads the few it takes, whatever the backlog behind them.
_WAITING_SQL = (
    "SELECT c.id, c.subscription_id, c.next_trigger FROM "
    "unnest(%s::uuid[], %s::integer[]) AS e(id, share) CROSS JOIN LATERAL ("
    "SELECT d.id, d.subscription_id, d.next_trigger, d.next_attempt_at "
    "FROM deliveries_delivery AS d WHERE d.subscription_id = e.id AND "
    "d.status = 'pending' AND d.enqueued_at IS NULL AND d.next_attempt_at <= %s "
    "AND (d.leased_until IS NULL OR d.leased_until < %s) AND NOT d.is_test "
    "ORDER BY d.next_attempt_at, d.id LIMIT e.share * 4 "
    "FOR UPDATE OF d SKIP LOCKED) AS c ORDER BY c.next_attempt_at, c.id"
)


def _claim(
    candidates: list[tuple[uuid.UUID, uuid.UUID, str]],
    *,
    now: dt.datetime,
    capacity: int | None,
    park: bool,
    lease: dt.timedelta,
    locked: bool = False,
    quota: Mapping[uuid.UUID, int] | None = None,
    oldest_first: bool = False,
    failing: FailingRoom | None = None,
    rest: list[tuple[uuid.UUID, uuid.UUID, str]] | None = None,
    along: WriteAlong | None = None,
) -> tuple[ClaimOutcome, list[tuple[Any, ...]], _Plan | None]:
    """Decide and lease, inside the caller's transaction; ``locked``: the caller already holds
    the locks of the candidates' webhooks; ``quota``: at most this many per webhook (the
    others stay as they are, waiting); ``oldest_first``: the candidates are new deliveries
    stored waiting, and a webhook with older ones waiting takes the oldest instead
    (``_oldest_first``); ``failing``: the caller's process's room for attempts to failing
    receivers; ``rest``: deliveries not to claim, only to tell which of them would wait
    (``ClaimOutcome.rest_waiting``); ``along``: a write sent with the lock, if one is taken."""
    outcome = ClaimOutcome()
    if not candidates:
        return outcome, [], None
    rest = rest or []
    claimed = {subscription_id for _pk, subscription_id, _trigger in candidates}
    endpoints = sorted(claimed | {subscription_id for _pk, subscription_id, _trigger in rest})
    if not locked:
        endpoints_lock(sorted(claimed), claiming=True, along=along)  # the rest's are only read
    # A claim takes at most one waiting delivery per candidate: counting that many more is
    # enough to tell whether some still wait after it (``_Plan.waiting_behind``).
    plan = _Plan(
        now=now, endpoints=endpoints, lease=lease, waiting_cap=len(candidates) + 1, failing=failing
    )
    passed_over: list[tuple[uuid.UUID, uuid.UUID, str]] = []
    if oldest_first:
        candidates, quota, passed_over = _oldest_first(candidates, plan, now)
    for pk, subscription_id, trigger in candidates:
        if capacity is not None and len(plan.chosen) >= capacity:
            outcome.unclaimed.append(str(pk))
        elif quota is not None and plan.waiting_taken.get(subscription_id, 0) >= quota.get(
            subscription_id, 0
        ):
            continue  # this webhook's share is taken; the rest go on waiting
        elif trigger in _BYPASS_LIMITS or plan.admits(subscription_id, pk):
            if trigger in _BYPASS_LIMITS:
                # It goes whatever the limits, but holds a slot: a delivery sent now by hand
                # from the moment it was sent, which the read of the webhook counted already
                # (``_endpoints_read``).
                plan.count(subscription_id, counted=trigger == AttemptTrigger.MANUAL)
            plan.chosen.append(pk)
            if not park:  # taking up deliveries that waited: fewer wait now
                plan.waiting_taken[subscription_id] = plan.waiting_taken.get(subscription_id, 0) + 1
        else:
            _wait(outcome, plan, pk, subscription_id)
    listed = {*map(str, plan.chosen), *outcome.waiting, *outcome.unclaimed}
    for pk, subscription_id, _trigger in passed_over:
        if str(pk) not in listed:  # new ones older deliveries went before: they wait
            _wait(outcome, plan, pk, subscription_id)
    for pk, subscription_id, trigger in rest:
        if trigger not in _BYPASS_LIMITS and plan.holds(subscription_id):
            outcome.rest_waiting.append(str(pk))
            plan.left.add(subscription_id)  # its attempts claimed here take them up
    outcome.retry_at = plan.retry_at
    if failing is not None:
        outcome.failing_held = failing.held
    rows = _lease(plan.chosen, now=now, plan=plan) if plan.chosen else []
    if park and outcome.waiting:
        rows_update(Delivery, outcome.waiting, enqueued_at=None)  # no message: waiting
    plan.states_save()
    plan.catch_ups_follow()
    return outcome, rows, plan


def _wait(outcome: ClaimOutcome, plan: _Plan, pk: uuid.UUID, endpoint: uuid.UUID) -> None:
    """``pk`` is left waiting by the claim (with a message for when its webhook's rate allows,
    ``ClaimOutcome.woken``)."""
    outcome.waiting.append(str(pk))
    plan.left.add(endpoint)
    if endpoint in plan.rate_held:
        outcome.woken.append(str(pk))


def _oldest_first(
    candidates: list[tuple[uuid.UUID, uuid.UUID, str]], plan: _Plan, now: dt.datetime
) -> tuple[
    list[tuple[uuid.UUID, uuid.UUID, str]],
    dict[uuid.UUID, int] | None,
    list[tuple[uuid.UUID, uuid.UUID, str]],
]:
    """New deliveries stored waiting (``candidates``), with older ones of the same webhook
    waiting too: the candidates become that webhook's oldest waiting deliveries, as many of
    them as it has new ones at most (the quota returned, one per new delivery). Only where a
    slot is free (``plan``): a full webhook's new deliveries wait anyway, and no more is read.
    Nor for a webhook paused, catching up (its head goes first anyway) or whose circuit is not
    closed (one probe at a time). Returns the candidates, the quota (None: as they were) and
    the new deliveries passed over for older ones."""
    new: dict[uuid.UUID, int] = {}
    for _pk, subscription_id, _trigger in candidates:
        new[subscription_id] = new.get(subscription_id, 0) + 1
    behind = {}
    for subscription_id, count in new.items():
        info = plan.endpoints.get(subscription_id)
        # Waiting counts the new ones too (and retries not yet due: the read below takes only
        # what is due, the new ones included, oldest first).
        if (
            info is not None
            and info.waiting > count
            and info.in_flight < info.concurrency
            and info.by_its_slots
        ):
            behind[subscription_id] = count
    if not behind:
        return candidates, None, []
    kept = [candidate for candidate in candidates if candidate[1] not in behind]
    passed_over = [candidate for candidate in candidates if candidate[1] in behind]
    return _waiting_candidates(behind, now) + kept, new, passed_over


def endpoints_lock(
    endpoint_ids: list[uuid.UUID], *, claiming: bool = False, along: WriteAlong | None = None
) -> None:
    """Serialise claims per webhook until the transaction ends (in one order: no deadlock).

    ``claiming``: a claim's own transaction, whose statements after the lock are the claim's
    (``_LOCK_CLAIMING_SQL``); the same statement sets how PostgreSQL plans them. ``along``:
    the caller's write, sent in the same statement (``common.sql.WriteAlong``).

    SQLite (the embedded default) runs one writing transaction at a time anyway.
    """
    if connection.vendor != "postgresql":
        return
    # Only in the claim's own transaction: the setting lasts until the transaction ends, and a
    # caller's statements after the claim were not written for it.
    plans = claiming and transaction_own()
    with connection.cursor() as cursor:
        cursor.execute(
            *with_along(
                along,
                _LOCK_CLAIMING_SQL if plans else _LOCK_SQL,
                [_ENDPOINT_LOCK_CLASS, list(endpoint_ids)],
            )
        )
    if along is not None:
        along.done = True


_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(%s, k) FROM (SELECT DISTINCT hashtext(x::text) AS k "
    "FROM unnest(%s::uuid[]) AS x ORDER BY k) AS keys"
)
# A worker's session prepares the statements it runs over and over (``common/apps.py``), and
# PostgreSQL then plans a prepared one afresh at every run while it judges the plan for these
# values cheaper than the one for any values. The claim's statements after the lock (the
# webhooks' read, the waiting deliveries, the lease, the breakers) are all on a webhook's or a
# delivery's key, with the conditions their partial indexes are made on written into the
# statement (``status = 'pending'``): the plan for any values is the same plan, kept, without
# the 0.2 to 0.3 ms of planning each of them took at every claim (the webhooks' read, with its
# five subqueries over the deliveries' thirteen indexes, the most). Until the transaction ends,
# set in the lock's own statement rather than by one more round trip. It applies to every
# statement with parameters that follows, prepared or not (a web process's Send Test, a
# worker's first runs, the foreign-key checks at the commit): unprepared ones are still planned
# once per run, by the same plan.
_LOCK_CLAIMING_SQL = (
    "WITH plans AS (SELECT set_config('plan_cache_mode', 'force_generic_plan', true)) "
    + _LOCK_SQL
    + ", plans"
)


def _lease_length(renewed: bool) -> dt.timedelta:
    """A renewed lease; or one that also covers a whole attempt without renewal."""
    seconds = settings.WEBHOOKS_LEASE_SECONDS
    if not renewed:
        seconds += settings.WEBHOOKS_TIMEOUT_SECONDS
    return dt.timedelta(seconds=seconds)


def _lease(chosen: list[uuid.UUID], *, now: dt.datetime, plan: _Plan) -> list[tuple[Any, ...]]:
    """Lease the chosen rows; return them (``_COLUMNS``). A row whose previous lease expired
    gets a second token (``plan.token_after_lost_lease``), so its interrupted attempt can be
    told apart. A delivery held by a pause (``retry_window_start_at`` set) starts its retry
    window at its first attempt, however long the catch-up made it wait."""
    lease = now + plan.lease
    token, token_after_lost_lease = uuid.uuid4(), plan.token_after_lost_lease
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE deliveries_delivery SET attempts = attempts + 1, "  # noqa: S608
                "leased_until = %s, last_attempt_at = %s, lease_token = CASE WHEN "
                "leased_until IS NULL THEN %s::uuid ELSE %s::uuid END, "
                "retry_window_start_at = CASE WHEN attempts = 0 AND retry_window_start_at < %s "
                "THEN %s ELSE retry_window_start_at END "
                f"WHERE id = ANY(%s::uuid[]) RETURNING {', '.join(_COLUMNS)}, txid_current()",
                [lease, now, token, token_after_lost_lease, now, now, chosen],
            )
            rows = cursor.fetchall()
            if rows:
                plan.txid = rows[0][-1]
            return [_leased_row(row[:-1]) for row in rows]
    Delivery.objects.filter(pk__in=chosen).update(
        attempts=F("attempts") + 1,
        leased_until=lease,
        lease_token=Case(
            When(leased_until__isnull=True, then=Value(token)),
            default=Value(token_after_lost_lease),
            output_field=UUIDField(),
        ),
        last_attempt_at=now,
        retry_window_start_at=Case(
            When(attempts=0, retry_window_start_at__lt=now, then=Value(now)),
            default=F("retry_window_start_at"),
            output_field=DateTimeField(),
        ),
    )
    return [
        (*row[:6], bytes(row[6]), *row[7:])
        for row in Delivery.objects.filter(
            pk__in=chosen, lease_token__in=[token, token_after_lost_lease]
        ).values_list(*_COLUMNS)
    ]


@dataclass
class _Endpoint:
    """What a claim reads of one webhook: its limits, what it has in flight, its state."""

    version: tuple[dt.datetime, int]  # updated_at, and how many signing secrets sign now
    is_active: bool
    failing_since: dt.datetime | None
    concurrency: int
    rate: int | None
    in_flight: int
    waiting: int  # due or not, without a message and not in flight (counted up to a cap)
    state: EndpointState | None
    paused: bool = False
    catching_up: bool = False
    head: uuid.UUID | None = None  # catching up: the waiting delivery that goes next
    host: str = ""  # its receiver host (``receiver_host``)

    @property
    def by_its_slots(self) -> bool:
        """Whether its deliveries go by its slots alone: not paused, not catching up (one at a
        time, head first) and its circuit closed (one probe at a time)."""
        return not (self.paused or self.catching_up) and (
            self.state is None or self.state.circuit_state == CircuitState.CLOSED
        )


def _probing(info: _Endpoint) -> EndpointState | None:
    """The webhook's breaker when its circuit is open or probing, else None. A disabled
    webhook's deliveries are refused without a request (send.py): its circuit holds none of
    them back, or its backlog would be failed one probe at a time."""
    state = info.state
    if state is not None and state.circuit_state != CircuitState.CLOSED and info.is_active:
        return state
    return None


class _Plan:
    """The webhooks of one claim: what each one admits now (read under their locks)."""

    def __init__(
        self,
        *,
        now: dt.datetime,
        endpoints: list[uuid.UUID],
        lease: dt.timedelta,
        waiting_cap: int,
        failing: FailingRoom | None = None,
    ):
        self.now = now
        self.lease = lease
        self.failing = failing
        self.failing_chosen: set[uuid.UUID] = set()  # admitted within ``failing``
        self.chosen: list[uuid.UUID] = []
        self.retry_at: dt.datetime | None = None
        self.rate_held: set[uuid.UUID] = set()  # webhooks their rate held back until retry_at
        self.endpoints = _endpoints_read(endpoints, now, waiting_cap=waiting_cap)
        self.changed: dict[uuid.UUID, EndpointState] = {}
        self.token_after_lost_lease = uuid.uuid4()
        self.left: set[uuid.UUID] = set()
        self.waiting_taken: dict[uuid.UUID, int] = {}
        self.kicked: set[uuid.UUID] = set()  # heads of catch-ups left behind: a message each
        self.caught_up: set[uuid.UUID] = set()  # catch-ups with nothing left waiting
        self.filled: set[uuid.UUID] = set()  # webhooks this claim took to their limit
        # The transaction that leased the chosen rows (PostgreSQL's ``txid_current()``).
        self.txid: int | None = None

    def waiting_behind(self, endpoint: uuid.UUID) -> bool:
        """Whether deliveries of ``endpoint`` may wait for its slots after this claim: some
        do, or this claim filled its last slot, so the next claim (in any process) leaves
        its deliveries waiting for the attempts of this one to finish."""
        info = self.endpoints.get(endpoint)
        waiting = 0 if info is None else info.waiting - self.waiting_taken.get(endpoint, 0)
        return endpoint in self.left or endpoint in self.filled or waiting > 0

    def admits(self, endpoint: uuid.UUID, delivery: uuid.UUID | None = None) -> bool:
        """Whether one more automatic delivery (``delivery``) to ``endpoint`` may go now (and
        count it)."""
        info = self.endpoints.get(endpoint)
        if info is None:
            return False  # the webhook was deleted; its deliveries go with it
        if info.paused:
            return False  # held until it resumes
        concurrency = info.concurrency
        if info.catching_up:
            concurrency = 1
            if info.head is None and info.in_flight == 0:
                self.caught_up.add(endpoint)
            elif info.head is not None and delivery != info.head:
                if info.in_flight == 0 and info.head not in self.chosen:
                    self.kicked.add(info.head)
                return False
        probing = _probing(info)
        if probing is not None:
            # Open, or a probe in flight: only one probe, once its time has come (it is sent
            # then, ``record._probes_schedule`` or the sweeper, not by this claim's callers).
            if probing.probe_at is not None and probing.probe_at > self.now:
                return False
            concurrency = 1
        if info.in_flight >= concurrency:
            return False
        failing = self._failing(info)
        if failing and self.failing is not None and not self.failing.has_room():
            return False  # the process has its share of attempts to failing receivers
        if info.rate is not None and not self._rate_take(endpoint, info):
            return False
        if probing is not None:
            probing.circuit_state = CircuitState.HALF_OPEN
            probing.probe_at = self.now + self.lease  # another probe if this one never reports
            self.changed[endpoint] = probing
        if failing and self.failing is not None and delivery is not None:
            self.failing.taken += 1
            self.failing_chosen.add(delivery)
        self.count(endpoint, concurrency)
        return True

    def holds(self, endpoint: uuid.UUID) -> bool:
        """Whether an automatic delivery to ``endpoint`` would only wait now, and something
        else will take it up (without counting it, as ``admits`` would): its webhook is paused
        (its resume), its circuit open with the probe not yet due (the probe), every slot
        taken (the attempts in flight), or it fails and this process's room for failing
        receivers is full while some of its attempts are in flight (those). Not when it may
        go, nor for a webhook catching up, whose head goes first (``admits``)."""
        info = self.endpoints.get(endpoint)
        if info is None or info.catching_up:
            return False
        if info.paused:
            return True
        probing = _probing(info)
        if probing is not None:
            return probing.probe_at is not None and probing.probe_at > self.now
        if info.in_flight >= info.concurrency:
            return True
        room = self.failing
        return room is not None and info.in_flight > 0 and room.full() and self._failing(info)

    def _failing(self, info: _Endpoint) -> bool:
        """Whether an attempt to this webhook counts among the failing receivers'
        (``FailingRoom``): its probe, a retry after network failures, or its host down."""
        state = info.state
        return self.failing is not None and (
            _probing(info) is not None
            or (state is not None and state.consecutive_failures > 0)
            or info.host in self.failing.hosts_down
        )

    def count(
        self, endpoint: uuid.UUID, concurrency: int | None = None, *, counted: bool = False
    ) -> None:
        """Count one more attempt in flight to ``endpoint`` (at most ``concurrency``, by
        default the webhook's; ``counted``: the read counted it already), and whether it took
        the last slot."""
        info = self.endpoints.get(endpoint)
        if info is None:
            return
        if not counted:
            info.in_flight += 1
        if info.in_flight >= (concurrency or info.concurrency):
            self.filled.add(endpoint)

    def _rate_take(self, endpoint: uuid.UUID, info: _Endpoint) -> bool:
        """Take one token of the webhook's bucket (``rate`` per second, bursts of ``rate``)."""
        rate = info.rate or 1
        state = info.state
        if state is None:
            state = info.state = EndpointState(
                subscription_id=endpoint, rate_tokens=float(rate), rate_tokens_at=self.now
            )
        # A claim's clock is read before it waits for the webhook's lock: a claim that held
        # the lock meanwhile may have counted the bucket at a later time. Never set it back,
        # or the time between would be counted again (tokens already spent, spent twice).
        counted_at = max(self.now, state.rate_tokens_at or self.now)
        elapsed = (self.now - (state.rate_tokens_at or self.now)).total_seconds()
        tokens = min(float(rate), state.rate_tokens + max(0.0, elapsed) * rate)
        state.rate_tokens_at = counted_at
        self.changed[endpoint] = state
        if tokens < 1.0:
            state.rate_tokens = tokens
            self._wake_at(endpoint, counted_at + dt.timedelta(seconds=(1.0 - tokens) / rate))
            return False
        state.rate_tokens = tokens - 1.0
        return True

    def _wake_at(self, endpoint: uuid.UUID, when: dt.datetime) -> None:
        """Deliveries of ``endpoint`` held back by its rate until ``when`` get a message for
        then, when it is near enough for one; later ones are the sweeper's."""
        if (when - self.now).total_seconds() > settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS:
            return
        self.rate_held.add(endpoint)
        self.retry_at = when if self.retry_at is None else min(self.retry_at, when)

    def catch_ups_follow(self) -> None:
        """Send the left-behind heads their message (after commit); end finished catch-ups."""
        if self.kicked:
            after_commit(deliveries_enqueue, self._heads_kicked())
        if self.caught_up:
            Subscription.objects.filter(
                pk__in=self.caught_up, catching_up_since__isnull=False
            ).update(catching_up_since=None)

    def _heads_kicked(self) -> list[uuid.UUID]:
        return sorted(self.kicked - set(self.chosen), key=str)

    def after_commit_lost(self) -> None:
        """What the claim had to do after its commit, when the commit's answer was lost (the
        connection with it, and the work queued for after it)."""
        if self.kicked:
            deliveries_enqueue(self._heads_kicked())

    def circuit_of(self, endpoint: uuid.UUID) -> tuple[str, int]:
        info = self.endpoints.get(endpoint)
        if info is None or info.state is None:
            return CircuitState.CLOSED, 0
        return info.state.circuit_state, info.state.consecutive_failures

    def states_save(self) -> None:
        """Write the breakers and buckets this claim changed (none on the usual path)."""
        if not self.changed:
            return
        EndpointState.objects.bulk_create(
            list(self.changed.values()),
            update_conflicts=True,
            unique_fields=["subscription"],
            update_fields=[
                "circuit_state",
                "circuit_changed_at",
                "probe_at",
                "rate_tokens",
                "rate_tokens_at",
            ],
        )


# A catching-up webhook's head: its waiting (no message) held delivery due first, on the index
# of waiting deliveries. Held ones were lined up before the resume (``pausing._held_order``);
# what became due later is not part of the catch-up, so steady new traffic cannot keep one going.
_HEAD_SQL = (
    "SELECT h.id FROM deliveries_delivery AS h WHERE h.subscription_id = s.id AND "
    "h.status = 'pending' AND h.enqueued_at IS NULL AND h.next_attempt_at <= %s AND "
    "h.next_attempt_at < s.catching_up_since AND "
    "(h.leased_until IS NULL OR h.leased_until < %s) AND NOT h.is_test AND "
    "h.next_trigger = 'automatic' ORDER BY h.next_attempt_at, h.id LIMIT 1"
)

_STATE_FIELDS = (
    "circuit_state",
    "circuit_changed_at",
    "consecutive_failures",
    "opened_count",
    "probe_at",
    "rate_tokens",
    "rate_tokens_at",
)


# The webhooks' read (``_endpoints_read``): their limits, state and counts of deliveries.
_ENDPOINTS_SQL = (
    "SELECT s.id, s.updated_at, s.is_active, s.failing_since, s.max_concurrency, "  # noqa: S608 - column names only
    "s.rate_limit_per_second, (SELECT count(*) FROM deliveries_delivery AS d "
    "WHERE d.subscription_id = s.id AND d.status = 'pending' AND "
    "d.leased_until >= %s) + (SELECT count(*) FROM deliveries_delivery AS m "
    "WHERE m.subscription_id = s.id AND m.status = 'pending' AND "
    "m.next_trigger = 'manual' AND (m.leased_until IS NULL OR m.leased_until < %s)), "
    "(SELECT count(*) FROM (SELECT 1 FROM deliveries_delivery "
    "AS w WHERE w.subscription_id = s.id AND w.status = 'pending' AND w.enqueued_at "
    "IS NULL AND (w.leased_until IS NULL OR w.leased_until < %s) LIMIT %s) AS w), "
    "(SELECT count(*) FROM subscriptions_signingsecret AS k "
    "WHERE k.subscription_id = s.id AND (k.expires_at IS NULL OR k.expires_at > %s)), "
    "st.subscription_id, "
    + ", ".join(f"st.{name}" for name in _STATE_FIELDS)
    + ", s.paused_at IS NOT NULL, s.catching_up_since IS NOT NULL, CASE WHEN "
    "s.catching_up_since IS NOT NULL THEN (" + _HEAD_SQL + ") END, s.url"
    " FROM subscriptions_subscription AS s LEFT JOIN deliveries_endpointstate "
    "AS st ON st.subscription_id = s.id WHERE s.id = ANY(%s::uuid[])"
)


def _slot_holders(now: dt.datetime) -> Q:
    """A pending delivery that holds one of its webhook's slots: in flight (leased), or sent now
    by hand and not yet taken up by a worker."""
    return Q(leased_until__gte=now) | (
        Q(next_trigger=AttemptTrigger.MANUAL)
        & (Q(leased_until__isnull=True) | Q(leased_until__lt=now))
    )


def _endpoints_read(
    endpoints: list[uuid.UUID], now: dt.datetime, *, waiting_cap: int
) -> dict[uuid.UUID, _Endpoint]:
    """The limits, deliveries in flight and state of each webhook (one query on PostgreSQL).

    In flight counts the deliveries sent now by hand that no worker has taken up yet: a person's
    "send now" goes whatever the limits, within the slots that were free when it was sent
    (``redrive.py``), and the automatic deliveries claimed meanwhile must not take them too.

    Its waiting deliveries are counted up to ``waiting_cap`` only: a webhook with a backlog
    of thousands would otherwise be counted whole by every claim, under its lock."""
    default = settings.WEBHOOKS_ENDPOINT_CONCURRENCY
    found: dict[uuid.UUID, _Endpoint] = {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_ENDPOINTS_SQL, [now, now, now, waiting_cap, now, now, now, endpoints])
            width = len(_STATE_FIELDS)
            for row in cursor.fetchall():
                state = None
                if row[9] is not None:
                    state = EndpointState(
                        subscription_id=row[9],
                        **dict(zip(_STATE_FIELDS, row[10 : 10 + width], strict=True)),
                    )
                paused, catching_up, head, url = row[10 + width :]
                found[row[0]] = _Endpoint(
                    version=(row[1], row[8]),
                    waiting=row[7],
                    is_active=row[2],
                    failing_since=row[3],
                    concurrency=row[4] or default,
                    rate=row[5],
                    in_flight=row[6],
                    state=state,
                    paused=paused,
                    catching_up=catching_up,
                    head=head,
                    host=receiver_host(url),
                )
        return found
    in_flight = dict(
        Delivery.objects.filter(subscription_id__in=endpoints, status=DeliveryStatus.PENDING)
        .filter(_slot_holders(now))
        .values("subscription_id")
        .annotate(count=Count("pk"))
        .values_list("subscription_id", "count")
    )
    states = {state.pk: state for state in EndpointState.objects.filter(pk__in=endpoints)}
    waiting = dict(
        Delivery.objects.filter(
            subscription_id__in=endpoints, status=DeliveryStatus.PENDING, enqueued_at__isnull=True
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .values("subscription_id")
        .annotate(count=Count("pk"))
        .values_list("subscription_id", "count")
    )
    secrets = dict(
        SigningSecret.objects.filter(subscription_id__in=endpoints)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values("subscription_id")
        .annotate(count=Count("pk"))
        .values_list("subscription_id", "count")
    )
    rows = Subscription.objects.filter(pk__in=endpoints).values_list(
        "pk",
        "updated_at",
        "is_active",
        "failing_since",
        "max_concurrency",
        "rate_limit_per_second",
        "paused_at",
        "catching_up_since",
        "url",
    )
    for (
        pk,
        updated_at,
        is_active,
        failing_since,
        concurrency,
        rate,
        paused_at,
        catching,
        url,
    ) in rows:
        head = None
        if catching is not None:
            head = catch_up_head(subscription_id=pk, since=catching, now=now)
        found[pk] = _Endpoint(
            paused=paused_at is not None,
            catching_up=catching is not None,
            head=head,
            version=(updated_at, secrets.get(pk, 0)),
            waiting=waiting.get(pk, 0),
            is_active=is_active,
            failing_since=failing_since,
            concurrency=concurrency or default,
            rate=rate,
            in_flight=in_flight.get(pk, 0),
            state=states.get(pk),
            host=receiver_host(url),
        )
    return found


def _claims_build(rows: list[tuple[Any, ...]], plan: _Plan | None, now: dt.datetime) -> list[Claim]:
    """Claims from the leased rows, each with its webhook (from this process's copies)."""
    if not rows or plan is None:
        return []
    subscriptions = _subscriptions_get(
        {row[3]: plan.endpoints[row[3]].version for row in rows if row[3] in plan.endpoints}
    )
    claims: list[Claim] = []
    for row in rows:
        info = plan.endpoints.get(row[3])
        subscription = subscriptions.get(row[3])
        if info is None or subscription is None:
            continue
        delivery = _delivery_of(
            row, subscription, is_active=info.is_active, failing_since=info.failing_since
        )
        circuit, failures = plan.circuit_of(delivery.subscription_id)
        claims.append(
            Claim(
                delivery=delivery,
                number=delivery.attempts,
                token=delivery.lease_token or plan.token_after_lost_lease,
                started_at=now,
                trigger=delivery.next_trigger,
                circuit=circuit,
                failures=failures,
                waiting_behind=plan.waiting_behind(delivery.subscription_id),
                catching_up=info.catching_up,
                failing=delivery.pk in plan.failing_chosen,
            )
        )
    _interrupted_record(claims, plan.token_after_lost_lease)
    return claims


def _leased_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row of ``_COLUMNS`` as PostgreSQL returned it, its body as bytes."""
    return (*row[:6], bytes(row[6]) if row[6] is not None else b"", *row[7:])


def _delivery_of(
    row: Sequence[Any],
    subscription: Subscription,
    *,
    is_active: bool,
    failing_since: dt.datetime | None,
) -> Delivery:
    """The delivery of a leased row (``_COLUMNS``) with its webhook from this process's copies,
    whose fields that change without touching ``updated_at`` are as the claim read them."""
    delivery = Delivery(**dict(zip(_COLUMNS, row, strict=True)))
    subscription.is_active = is_active
    subscription.failing_since = failing_since
    delivery.subscription = subscription
    delivery.school = subscription.school
    return delivery


def _interrupted_record(claims: list[Claim], token_after_lost_lease: uuid.UUID) -> None:
    """Log the lost attempts of the claims whose previous lease ran out (they got
    ``token_after_lost_lease``)."""
    interrupted = [claim.delivery for claim in claims if claim.token == token_after_lost_lease]
    if interrupted:
        attempts_interrupted_record([(delivery, delivery.attempts - 1) for delivery in interrupted])


# --- Handing a slot over ---------------------------------------------------------------------
#
# A webhook with deliveries waiting for its slots takes them up as its attempts end: under the
# webhook's lock, a claim counts what is in flight and leases what fits
# (``deliveries_claim_waiting``). The usual case needs no count: an attempt answered, its
# webhook plain (no rate limit, not paused or catching up, its circuit closed), and the oldest
# waiting delivery takes its slot. The statement that records the attempt
# (``record._RESULTS_WRITE_HANDING``) then also leases that delivery: one lease ends and one
# begins in one commit, so the number in flight, which every locked claim counts, does not
# change, and no lock is needed for it. A slot is only handed over while the attempt's own
# lease still holds (it is counted in flight until then), never to more than the webhook's
# concurrency allows in flight (a limit lowered meanwhile is kept), and only to the delivery
# the locked take-up would take: the oldest waiting, nobody else holding it (``SKIP LOCKED``;
# unleased, or its lease ran out, its lost attempt then logged as interrupted).
#
# What it cannot hand over (nothing committed waits yet, or the webhook is not plain) goes the
# locked way, as before: a claim that is leaving deliveries waiting (it saw the slot taken)
# commits before the locked take-up reads, so none is left without an attempt to take it up.

# An attempt's slot is handed over only if its lease has at least this long left.
_HANDOVER_LEASE_LEFT_SECONDS = 2.0


@dataclass
class Handover:
    """Slots a record hands over (``ids``: the answered attempts' deliveries), the lease it
    gives, and what the statement leased (``_COLUMNS`` and ``_HANDED_EXTRA``)."""

    ids: list[uuid.UUID]
    token: uuid.UUID
    lease_until: dt.datetime
    concurrency: int
    rows: list[tuple[Any, ...]] | None = None


def handover_prepare(
    claims: Sequence[Claim], results: Sequence[TransportResult], now: dt.datetime
) -> Handover | None:
    """The slots of ``claims`` that may be handed over when their ``results`` are recorded at
    ``now``: automatic attempts to a plain webhook, with deliveries waiting behind them, whose
    lease holds (a renewed lease lasts ``WEBHOOKS_LEASE_SECONDS`` from the claim at least), and
    that the receiver answered. An answer proves it there, unless another attempt of the batch
    to the same webhook failed to reach it; not a 410, whose webhook is disabled right after
    the record (``record.receivers_gone_disable``), nor another attempt's 410."""
    unreached = {
        claim.delivery.subscription_id
        for claim, result in zip(claims, results, strict=True)
        if result.error_kind in NETWORK_FAILURES
        or (result.status == 410 and claim.trigger != AttemptTrigger.TEST)
    }
    held = dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS - _HANDOVER_LEASE_LEFT_SECONDS)
    ids = [
        claim.delivery.pk
        for claim, result in zip(claims, results, strict=True)
        if result.status is not None
        and result.status != 410
        and claim.delivery.subscription_id not in unreached
        and claim.waiting_behind
        and claim.trigger == AttemptTrigger.AUTOMATIC
        and claim.circuit == CircuitState.CLOSED
        and not claim.catching_up
        and claim.delivery.subscription.is_active
        and claim.delivery.subscription.rate_limit_per_second is None
        and now - claim.started_at < held
    ]
    if not ids:
        return None
    return Handover(
        ids=ids,
        token=uuid.uuid4(),
        lease_until=now + _lease_length(True),
        concurrency=settings.WEBHOOKS_ENDPOINT_CONCURRENCY,
    )


# What the handover returns besides the delivery (``_COLUMNS``): its webhook's version (as
# ``_endpoints_read`` reads it), failure streak start and network failures in a row.
_HANDED_EXTRA = "x.updated_at, x.secrets, x.failing_since, x.failures"

# The handover, a data-modifying part of the record's statement (``{owned}``: its results'
# deliveries whose lease was still the worker's). Numbered placeholders: ``{now}``, ``{ids}``
# (``Handover.ids``), ``{lease}``, ``{token}``, ``{lost}`` (``lost_token``), ``{concurrency}``
# (the default). The counts read the statement's snapshot, in which the recorded attempts are
# still in flight; whether their leases still hold is read from the clock once the parts of the
# statement that may wait for other transactions' row locks are done (``record.py``).
HANDED_SQL = (
    "UPDATE deliveries_delivery AS h SET attempts = h.attempts + 1, "  # noqa: S608 - column names only
    # A lease that starts when the statement runs, however long it waited for a row.
    "leased_until = clock_timestamp() + (${lease}::timestamptz - ${now}::timestamptz), "
    "last_attempt_at = ${now}, lease_token = CASE WHEN h.leased_until IS NULL "
    "THEN ${token}::uuid ELSE ${lost}::uuid END, "
    "retry_window_start_at = CASE WHEN h.attempts = 0 AND h.retry_window_start_at < ${now} "
    "THEN ${now} ELSE h.retry_window_start_at END "
    "FROM (SELECT c.id, s.updated_at, s.failing_since, "
    "COALESCE(st.consecutive_failures, 0) AS failures, "
    "(SELECT count(*) FROM subscriptions_signingsecret AS k WHERE k.subscription_id = s.id "
    "AND (k.expires_at IS NULL OR k.expires_at > ${now})) AS secrets "
    # The slots: the attempts whose lease (as the statement began: renewals only lengthen it)
    # still holds now that their rows are written, with a margin for the rest of the statement.
    "FROM (SELECT o.subscription_id, count(*) AS n FROM {owned} AS o "
    "JOIN deliveries_delivery AS p ON p.id = o.id "
    "WHERE o.id = ANY(${ids}::uuid[]) AND p.leased_until >= clock_timestamp() + interval '"
    + str(_HANDOVER_LEASE_LEFT_SECONDS)
    + " seconds' GROUP BY o.subscription_id) AS f "
    "JOIN subscriptions_subscription AS s ON s.id = f.subscription_id "
    "LEFT JOIN deliveries_endpointstate AS st ON st.subscription_id = s.id "
    # The oldest waiting delivery, as the locked take-up takes it (``_WAITING_SQL``): recovery
    # ones too, and one whose lease ran out; not one sent now by hand (it holds a slot).
    "CROSS JOIN LATERAL (SELECT w.id FROM deliveries_delivery AS w "
    "WHERE w.subscription_id = f.subscription_id AND w.status = 'pending' "
    "AND w.enqueued_at IS NULL AND w.next_attempt_at <= ${now} "
    "AND (w.leased_until IS NULL OR w.leased_until < ${now}) "
    "AND NOT w.is_test AND w.next_trigger <> 'manual' "
    "ORDER BY w.next_attempt_at, w.id "
    "LIMIT GREATEST(0, LEAST(f.n, "
    "COALESCE(NULLIF(s.max_concurrency, 0), ${concurrency}::integer) + f.n - ("
    "SELECT count(*) FROM deliveries_delivery AS d WHERE d.subscription_id = s.id "
    "AND d.status = 'pending' AND d.leased_until >= ${now}) - (SELECT count(*) FROM "
    "deliveries_delivery AS m WHERE m.subscription_id = s.id AND m.status = 'pending' AND "
    "m.next_trigger = 'manual' AND (m.leased_until IS NULL OR m.leased_until < ${now})))) "
    "FOR UPDATE OF w SKIP LOCKED) AS c "
    "WHERE s.is_active AND s.paused_at IS NULL AND s.catching_up_since IS NULL "
    "AND s.rate_limit_per_second IS NULL "
    "AND (st.subscription_id IS NULL OR st.circuit_state = 'closed')) AS x "
    "WHERE h.id = x.id RETURNING "
    + ", ".join(f"h.{name}" for name in _COLUMNS)
    + ", "
    + _HANDED_EXTRA
)


def lost_token(token: uuid.UUID) -> uuid.UUID:
    """The token a handover gives a delivery whose previous lease ran out (its lost attempt
    is logged as interrupted, as ``_lease``'s ``token_after_lost_lease``)."""
    return uuid.uuid5(token, "lease ran out")


# The leases a handover gave, read back by its token (its commit's answer was lost), and
# renewed from now: the claims made of them start now (``claims_handed``). Not one whose lease
# ran out meanwhile: a claim may have counted its slot free.
_HANDED_READ_SQL = (
    "UPDATE deliveries_delivery AS h SET leased_until = %s "  # noqa: S608 - column names only
    "FROM (SELECT s.id, s.updated_at, s.failing_since, "
    "COALESCE(st.consecutive_failures, 0) AS failures, (SELECT count(*) FROM "
    "subscriptions_signingsecret AS k WHERE k.subscription_id = s.id AND (k.expires_at IS "
    "NULL OR k.expires_at > %s)) AS secrets FROM subscriptions_subscription AS s LEFT JOIN "
    "deliveries_endpointstate AS st ON st.subscription_id = s.id) AS x "
    "WHERE x.id = h.subscription_id AND h.lease_token = ANY(%s::uuid[]) "
    "AND h.status = 'pending' AND h.leased_until >= %s RETURNING "
    + ", ".join(f"h.{name}" for name in _COLUMNS)
    + ", "
    + _HANDED_EXTRA
)


def handed_read(token: uuid.UUID, now: dt.datetime) -> list[tuple[Any, ...]]:
    """The deliveries a handover leased with ``token`` and still holds, their leases renewed."""
    with connection.cursor() as cursor:
        cursor.execute(
            _HANDED_READ_SQL,
            [now + _lease_length(True), now, [token, lost_token(token)], now],
        )
        return [tuple(row) for row in cursor.fetchall()]


def claims_handed(rows: list[tuple[Any, ...]], now: dt.datetime, token: uuid.UUID) -> list[Claim]:
    """Claims of the deliveries a handover leased (its rows: ``_COLUMNS``, then the webhook's
    version, failure streak start and failures), each with its webhook from this process's
    copies. They wait behind nothing the handover knows of, so each takes up after itself."""
    if not rows:
        return []
    width = len(_COLUMNS)
    subscriptions = _subscriptions_get({row[3]: (row[width], row[width + 1]) for row in rows})
    claims: list[Claim] = []
    for row in rows:
        subscription = subscriptions.get(row[3])
        if subscription is None:
            continue  # deleted since: its deliveries went with it
        # Leased only for an active webhook.
        delivery = _delivery_of(
            _leased_row(row[:width]), subscription, is_active=True, failing_since=row[width + 2]
        )
        claims.append(
            Claim(
                delivery=delivery,
                number=delivery.attempts,
                token=row[_COLUMNS.index("lease_token")],  # the handover's, never empty
                started_at=now,
                trigger=delivery.next_trigger,
                circuit=CircuitState.CLOSED,
                failures=row[width + 3],
                waiting_behind=True,
            )
        )
    _interrupted_record(claims, lost_token(token))
    return claims


# --- This process's copies of the webhooks ----------------------------------------------------

_CACHE_SECONDS = 60.0
_cache: dict[uuid.UUID, tuple[tuple[dt.datetime, int], float, Subscription]] = {}
_cache_lock = threading.Lock()
_cache_pruned_at = 0.0


def _subscriptions_get(
    wanted: dict[uuid.UUID, tuple[dt.datetime, int]],
) -> dict[uuid.UUID, Subscription]:
    """The webhooks (with their school and signing secrets) as of their version (``updated_at``
    and their count of signing secrets), from this process's copies; missing or outdated ones
    are read, in two queries for all of them. A copy is also read again after a minute."""
    fresh = time.monotonic()
    if fresh - _cache_pruned_at > _CACHE_SECONDS:
        _cache_prune(fresh)
    found: dict[uuid.UUID, Subscription] = {}
    missing: list[uuid.UUID] = []
    for pk, version in wanted.items():
        cached = _cache.get(pk)
        if cached is not None and cached[0] == version and fresh - cached[1] < _CACHE_SECONDS:
            found[pk] = cached[2]
        else:
            missing.append(pk)
    if missing:
        loaded = _subscriptions_read(missing)
        with _cache_lock:
            for subscription in loaded:
                _cache[subscription.pk] = (wanted[subscription.pk], fresh, subscription)
                found[subscription.pk] = subscription
    return found


def _subscriptions_read(pks: list[uuid.UUID]) -> list[Subscription]:
    """The webhooks ``pks`` with their school and the signing secrets that still sign
    (``signing_secrets_cached``, newest first), as ``select_related`` and a ``Prefetch`` give
    them. On PostgreSQL two fixed statements whose rows are made into models as the ORM would
    (``models_from_rows``): a raw query set's matching of columns to fields cost more than the
    rest, 650 µs of CPU against 360 µs for one webhook not read lately (the usual case of a
    school with few events), 55 µs against 47 µs each in fifties. Elsewhere the ORM."""
    now = db_now()
    if connection.vendor != "postgresql":
        secrets = SigningSecret.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        ).order_by("-created_at")
        loaded = Subscription.objects.select_related("school").prefetch_related(
            Prefetch("signing_secrets", queryset=secrets, to_attr="signing_secrets_cached")
        )
        return list(loaded.filter(pk__in=pks))
    with connection.cursor() as cursor:
        cursor.execute(_SUBSCRIPTIONS_READ, [pks])
        rows = cursor.fetchall()
        cursor.execute(_SECRETS_READ, [pks, now])
        secret_rows = cursor.fetchall()
    width = len(_SUBSCRIPTION_FIELDS)
    webhooks = models_from_rows(Subscription, _SUBSCRIPTION_FIELDS, rows)
    schools = models_from_rows(School, _SCHOOL_FIELDS, [row[width:] for row in rows])
    subscriptions: dict[uuid.UUID, Subscription] = {}
    for subscription, school in zip(webhooks, schools, strict=True):
        _SCHOOL_FIELD.set_cached_value(subscription, school)
        subscription.signing_secrets_cached = []  # type: ignore[attr-defined]
        subscriptions[subscription.pk] = subscription
    for secret in models_from_rows(SigningSecret, _SECRET_FIELDS, secret_rows):
        owner = subscriptions.get(secret.subscription_id)
        if owner is not None:
            _SECRET_FIELD.set_cached_value(secret, owner)
            owner.signing_secrets_cached.append(secret)  # type: ignore[attr-defined]
    return list(subscriptions.values())


_SCHOOL_FIELD = Subscription._meta.get_field("school")
_SECRET_FIELD = SigningSecret._meta.get_field("subscription")
_SUBSCRIPTION_FIELDS = fields_in_order(Subscription)
_SCHOOL_FIELDS = fields_in_order(School)
_SECRET_FIELDS = fields_in_order(SigningSecret)
_SUBSCRIPTIONS_READ = (  # noqa: S608 - column and table names only
    "SELECT {webhook_columns}, {school_columns} FROM {webhooks} AS w "
    "JOIN {schools} AS s ON s.id = w.school_id WHERE w.id = ANY(%s::uuid[])"
).format(
    webhook_columns=", ".join(f"w.{field.column}" for field in _SUBSCRIPTION_FIELDS),
    school_columns=", ".join(f"s.{field.column}" for field in _SCHOOL_FIELDS),
    webhooks=Subscription._meta.db_table,
    schools=School._meta.db_table,
)
_SECRETS_READ = (  # noqa: S608 - column and table names only
    "SELECT {columns} FROM {secrets} WHERE subscription_id = ANY(%s::uuid[]) "
    "AND (expires_at IS NULL OR expires_at > %s) ORDER BY created_at DESC"
).format(
    columns=", ".join(str(field.column) for field in _SECRET_FIELDS),
    secrets=SigningSecret._meta.db_table,
)


def _cache_prune(now: float) -> None:
    """Forget the copies older than a minute (they would be read again before use anyway): a
    long-lived process holds the webhooks it sent to lately, not every one since it started,
    deleted ones included."""
    global _cache_pruned_at
    with _cache_lock:
        _cache_pruned_at = now
        for pk in [
            pk for pk, (_v, read_at, _s) in _cache.items() if now - read_at >= _CACHE_SECONDS
        ]:
            del _cache[pk]


def signing_secrets_of(subscription: Subscription, now: dt.datetime) -> list[SigningSecret]:
    """The webhook's signing secrets that still sign at ``now``, newest first."""
    secrets: list[SigningSecret] = getattr(subscription, "signing_secrets_cached", [])
    return [s for s in secrets if s.expires_at is None or s.expires_at > now]


def attempts_interrupted_record(lost: list[tuple[Delivery, int]]) -> None:
    """Log the attempts whose worker stopped before recording them (each delivery with the
    number of its lost attempt); a record that the late worker did write is kept."""
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=delivery,
                number=number,
                trigger=AttemptTrigger.AUTOMATIC,
                started_at=delivery.last_attempt_at or db_now(),
                request_url=request_url_capped(delivery.subscription.url),
                error_kind=ErrorKind.INTERRUPTED,
                error_message="The worker stopped before this attempt finished; it was retried.",
            )
            for delivery, number in lost
        ],
        ignore_conflicts=True,
    )


def deliveries_requeue_early(*, delivery_ids: list[str]) -> None:
    """Messages that arrive just before their delivery is due (clock skew) are sent again."""
    if not delivery_ids:
        return
    now = db_now()
    horizon = now + dt.timedelta(seconds=settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS)
    early = Delivery.objects.filter(
        pk__in=delivery_ids,
        status=DeliveryStatus.PENDING,
        next_attempt_at__gt=now,
        next_attempt_at__lte=horizon,
        leased_until__isnull=True,
    ).values_list("pk", "next_attempt_at")
    for delivery_id, due in early:
        if due is not None:
            deliveries_enqueue([delivery_id], countdown=(due - now).total_seconds())


def leases_renew(*, leases: dict[uuid.UUID, uuid.UUID]) -> int:
    """Extend by ``WEBHOOKS_LEASE_SECONDS`` the leases this worker still holds (delivery id:
    its lease token); return how many. One statement, whatever their number."""
    if not leases:
        return 0
    until = db_now() + dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    return Delivery.objects.filter(
        pk__in=list(leases), lease_token__in=set(leases.values()), status=DeliveryStatus.PENDING
    ).update(leased_until=until)
