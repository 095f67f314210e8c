"""Fan-out: each published event becomes one delivery per matching webhook, its body rendered
once, and the delivery task messages are sent.

Hand-off. ``event_publish`` (events) stores the event and, after commit, calls the hook this app
registers (``DeliveriesConfig.ready`` -> ``fan_out_request``). The request is coalesced in one
row (``FanOutRequest``): only the publisher that finds none pending sends a
``deliveries.events_fan_out`` task, so at a high rate one task fans out many events.

One implementation. ``events_fan_out_pending`` (the task), ``event_fan_out`` (one event: the
legacy task and tests), and the sweeper all run ``_events_fan_out_batch``: claim waiting events
(``SKIP LOCKED``, oldest first), match them against their schools' active webhooks, build and
insert the deliveries, mark the events, enqueue after commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils.translation import gettext_noop

from common.clock import db_now
from common.sql import (
    WriteAlong,
    columns_of,
    fields_in_order,
    models_from_rows,
    rows_update,
    rows_update_along,
)
from common.transactions import after_commit, transaction_own
from events.models import Event
from events.selectors import events_awaiting_fan_out
from schools.models import School
from subscriptions.models import Subscription
from subscriptions.selectors import subscriptions_active_by_school
from webhook_engine.bodies import BodyTemplateError
from webhook_engine.envelope import envelope_build
from webhook_engine.errors import ErrorKind
from webhook_engine.filters import FilterInvalid, Predicate, filter_compile
from webhook_engine.render import CONTENT_TYPES, render_with_template

from ..metrics import events_fan_out_observe
from ..models import Delivery, DeliveryStatus, FanOutRequest

if TYPE_CHECKING:
    from .dispatch import InsertedClaim

logger = logging.getLogger(__name__)

FAN_OUT_TASK = "deliveries.events_fan_out"
DELIVER_TASK = "deliveries.deliver"
# The priority of a large operation's delivery messages (``deliveries_enqueue``). Redis has
# none of its own: kombu keeps a list per priority step (0, 3, 6, 9; 0 first) and a worker
# takes from the first that is not empty. Every other message has the default, 0.
BULK_PRIORITY = 9
# A fan-out request pending longer than this is sent again: its message may have been lost.
FAN_OUT_REQUEST_RESEND_SECONDS = 2.0
# A fan-out task goes on reading the events published meanwhile for this long at most, then
# leaves the worker process to other tasks.
FAN_OUT_LOOP_SECONDS = 1.0
# Its mark of the request, after each batch, holds the publishers' messages back for this long
# only: a task that stalls (a lock, a slow statement, a paused host) leaves the events published
# after that to a task of their own, not waiting for it. It marks again after every batch.
FAN_OUT_HOLD_SECONDS = 0.1
# With its mark after a batch of at least FAN_OUT_PROMISE_EVENTS events (events coming fast),
# the task also makes a promise (``FanOutRequest.read_after_ms``): a publish that reads it in
# its insert and commits within FAN_OUT_PROMISE_SECONDS asks for nothing after its commit
# (``fan_out_promise_sql``). Whoever takes the request ends the promise and owes a read
# that starts that long after (times FAN_OUT_PROMISE_RATE, for the hosts' clocks), reading
# again every FAN_OUT_PROMISE_POLL_SECONDS until then.
FAN_OUT_PROMISE_EVENTS = 2
FAN_OUT_PROMISE_SECONDS = 0.03
FAN_OUT_PROMISE_POLL_SECONDS = 0.002
FAN_OUT_PROMISE_RATE = 1.1


# --- The hand-off ---------------------------------------------------------------------------


def fan_out_request(*, force: bool = False) -> bool:
    """Ask a worker to fan out the events awaiting it; call after the events are committed.

    The hook ``event_publish`` calls after each commit. Coalesced: while a request is pending
    (asked for less than ``FAN_OUT_REQUEST_RESEND_SECONDS`` ago and not yet taken up), no second
    task message is sent. ``force`` sends one regardless. Returns whether a message was sent.
    A failure is logged, not raised: the events are committed, and the next request or the
    sweeper fans them out.
    """
    # The database's clock: the request's time is compared with those other hosts wrote.
    now_ms = int(db_now().timestamp() * 1000)
    resend_ms = int(FAN_OUT_REQUEST_RESEND_SECONDS * 1000)
    if not _fan_out_request_claim(now_ms, stale_before=now_ms + 1 if force else now_ms - resend_ms):
        return False
    started = time.monotonic()
    try:
        current_app.send_task(FAN_OUT_TASK, retry_policy=settings.WEBHOOKS_PUBLISH_RETRY_POLICY)
    except Exception:
        logger.exception("Could not enqueue fan-out; the next request or the sweeper will")
        # Refused at once: not pending after all, the next publish tries again. The broker did
        # not answer: pending from now, so the publishes of the next
        # FAN_OUT_REQUEST_RESEND_SECONDS do not each wait for it again.
        refused_at_once = time.monotonic() - started < 1
        retry_from = None if refused_at_once else int(db_now().timestamp() * 1000)
        FanOutRequest.objects.filter(pk=1, requested_at_ms=now_ms).update(
            requested_at_ms=retry_from
        )
        return False
    return True


# The start of a statement, run as a transaction of its own (autocommit), whose commit does not
# wait for the disk: the fan-out request's marks, which only coalesce messages. The statement
# must read ``commits`` (a CTE no part of it reads is not run).
_NOT_WAITING_FOR_DISK = "WITH commits AS (SELECT set_config('synchronous_commit', 'off', true)) "


def _fan_out_request_claim(now_ms: int, *, stale_before: int) -> bool:
    """Mark fan-out requested at ``now_ms`` unless a request made at or after ``stale_before``
    is pending; True if this call marked it.

    Runs once per published event, in raw SQL. Under load a fresh request is usually pending,
    which a plain read shows without taking the row's lock; otherwise an upsert (the row is
    gone after a table flush) marks it. Reading first is safe: a pending request seen after
    this event's commit is cleared by its task after that commit, before the task reads.
    """
    if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        return True  # no RETURNING: a message per event, as the embedded setup can afford
    table = FanOutRequest._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT requested_at_ms FROM {table} WHERE id = 1")  # noqa: S608
        row = cursor.fetchone()
        if row is not None and row[0] is not None and row[0] >= stale_before:
            return False
    # The request only coalesces messages: if a database crash loses it, the events are
    # committed and the sweeper fans them out. So its commit does not wait for the disk
    # (about 1.7 ms of each publish that finds no request pending): one statement, its own
    # transaction. Inside a caller's transaction, whose own writes must wait for the disk, a
    # savepoint of it.
    inside = connection.in_atomic_block
    if connection.vendor == "postgresql" and not inside:
        prefix, values = _NOT_WAITING_FOR_DISK, "SELECT 1, %s::bigint FROM commits"
    else:
        prefix, values = "", "VALUES (1, %s)"
    savepoint = transaction.atomic() if inside else contextlib.nullcontext()
    with savepoint, connection.cursor() as cursor:
        cursor.execute(
            f"{prefix}INSERT INTO {table} (id, requested_at_ms) {values} "
            "ON CONFLICT (id) DO UPDATE SET requested_at_ms = excluded.requested_at_ms "
            f"WHERE {table}.requested_at_ms IS NULL OR {table}.requested_at_ms < %s "
            "RETURNING id",
            [now_ms, stale_before],
        )
        return cursor.fetchone() is not None


# The database's clock in milliseconds, as the promise is written and read.
_CLOCK_MS = "extract(epoch FROM clock_timestamp()) * 1000"


def fan_out_promise_sql() -> str:
    """The SQL a publish reads in its insert (``event_published_hook_set``): within how many
    milliseconds its commit needs no request, NULL where no promise runs.

    The promise's own end, by the database's clock, is only there so that a promise whose
    task died stops counting; no more than ``FAN_OUT_PROMISE_SECONDS`` either way, and none
    where more than that is left (the database's clock went back): what makes the promise
    safe is that the take clears it and then waits that long, on the taker's own clock."""
    table = FanOutRequest._meta.db_table
    promise_ms = int(FAN_OUT_PROMISE_SECONDS * 1000)
    left = f"SELECT read_after_ms - {_CLOCK_MS} AS left_ms FROM {table} WHERE id = 1"  # noqa: S608
    bounded = f"LEAST(promise.left_ms, {promise_ms})"
    within = f"promise.left_ms > 0 AND promise.left_ms <= {promise_ms + 1}"
    return f"SELECT CASE WHEN {within} THEN {bounded} END FROM ({left}) AS promise"  # noqa: S608


@dataclass(frozen=True)
class OwedRead:
    """A read a task owes: not before ``until`` (``time.monotonic()``); ``debt``, the mark its
    take left in the row, which it clears once it has paid (0: nothing owed)."""

    until: float = 0.0
    debt: int = 0


def fan_out_request_take() -> OwedRead:
    """Clear the pending request and end the promise; a fan-out task does this before it
    reads the events, at its start and before its last read.

    Where a promise was made (or a debt left, below), returns the ``time.monotonic()``
    before which the caller must not start its last read: publishers that read the promise
    before this take (several tasks may have made it) commit within
    ``FAN_OUT_PROMISE_SECONDS`` of that, so a read that starts that long after the take sees
    their events, whatever the database's clock did meanwhile. The take leaves a debt in the
    promise's place (a negative number, which no publisher counts on) until the caller has
    read (``fan_out_debt_paid``): a task that ends on a full batch, or fails and is tried
    again, before then leaves it to the next take, which owes the same read later still."""
    if connection.vendor != "postgresql":
        rows_update(FanOutRequest, [1], requested_at_ms=None)
        return OwedRead()
    table = FanOutRequest._meta.db_table
    debt = -(secrets.randbelow(2**62) + 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET requested_at_ms = NULL, read_after_ms = "  # noqa: S608
            "CASE WHEN read_after_ms IS NULL THEN NULL ELSE %s::bigint END "
            "WHERE id = 1 RETURNING read_after_ms IS NOT NULL",
            [debt],
        )
        row = cursor.fetchone()
    if row is None or not row[0]:
        return OwedRead()
    wait = FAN_OUT_PROMISE_SECONDS * FAN_OUT_PROMISE_RATE + 0.002
    return OwedRead(until=time.monotonic() + wait, debt=debt)


def fan_out_debt_paid(owed: OwedRead) -> None:
    """Clear the debt ``owed``'s take left, once a read has started after its time, unless a
    later take or promise has replaced it. Its commit does not wait for the disk: lost in a
    crash, the debt only makes the next take wait once more."""
    if not owed.debt:
        return
    table = FanOutRequest._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"{_NOT_WAITING_FOR_DISK}UPDATE {table} SET read_after_ms = NULL "  # noqa: S608
            "FROM commits WHERE id = 1 AND read_after_ms = %s",
            [owed.debt],
        )


def fan_out_request_hold(*, promise: bool = True) -> bool:
    """Mark the request pending while a fan-out task goes on reading: for the next
    ``FAN_OUT_HOLD_SECONDS``, publishers send no message (``events_fan_out_pending``). Written
    as a request made that long before it goes stale. As for a publisher's request, the commit
    does not wait for the disk; one statement on PostgreSQL.

    With ``promise``, on PostgreSQL, it also makes the promise publishers read
    (``fan_out_promise_sql``), ending ``FAN_OUT_PROMISE_SECONDS`` from now by the database's
    clock; the task keeps it by taking the request before its last read
    (``fan_out_request_take``). Returns whether it made one (never on SQLite)."""
    stale_ms = int((FAN_OUT_REQUEST_RESEND_SECONDS - FAN_OUT_HOLD_SECONDS) * 1000)
    held_ms = int(db_now().timestamp() * 1000) - stale_ms
    if connection.vendor != "postgresql":
        rows_update(FanOutRequest, [1], requested_at_ms=held_ms)
        return False
    table = FanOutRequest._meta.db_table
    promised = f", read_after_ms = floor({_CLOCK_MS})::bigint + %s" if promise else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"{_NOT_WAITING_FOR_DISK}UPDATE {table} SET requested_at_ms = %s{promised} "  # noqa: S608
            "FROM commits WHERE id = 1",
            [held_ms, int(FAN_OUT_PROMISE_SECONDS * 1000)] if promise else [held_ms],
        )
    return promise


# --- Entry points ---------------------------------------------------------------------------


def events_fan_out_pending(*, limit: int | None = None, dispatch: bool = False) -> int:
    """The task behind a fan-out request: take the request, then fan out what is waiting, and
    go on while events keep coming (for up to ``FAN_OUT_LOOP_SECONDS``).

    Taking the request first, then reading, means an event committed after the read has made
    a request of its own. While the batches find events the task marks the request pending
    again after each (``fan_out_request_hold``) and reads on: the events published meanwhile
    are its own, without a message each (about 2 ms of a worker's CPU per message, measured
    with one webhook per event). It ends as it began, by taking the request and reading once
    more: a publisher that saw the request pending saw it before that read. A full batch ends
    it too: that batch asked for another task. ``dispatch`` (the worker's task) sends the
    first deliveries of each batch from this process right away instead of through a message.
    See ``events_fan_out_waiting``; returns how many events went out.

    While events come fast (a batch of ``FAN_OUT_PROMISE_EVENTS`` or more), the mark also
    makes a promise: a publish that reads it in its insert and commits within
    ``FAN_OUT_PROMISE_SECONDS`` makes no request at all (one statement a publish, not two).
    Every take ends the promise; a task whose take ended one does not end before a read has
    started that long after the take, reading again every ``FAN_OUT_PROMISE_POLL_SECONDS``
    meanwhile. Before it takes the request on a pause in such a stream, it reads again so for
    half as long as its promise lasts: publishes go on counting on the promise. A task that
    ends on a full batch, or fails, before that read leaves it to the next take (the debt
    ``fan_out_request_take`` leaves in the row).
    """
    owed = fan_out_request_take()  # a promise or debt another task left to this one
    fanned_out, taken = 0, True
    promised_until = 0.0  # until then, a pause in the events needs no take yet
    until = time.monotonic() + FAN_OUT_LOOP_SECONDS
    while True:
        read_at = time.monotonic()
        count, more = _events_fan_out_waiting(limit=limit, dispatch=dispatch)
        fanned_out += count
        if owed.debt and read_at >= owed.until:
            fan_out_debt_paid(owed)  # that read saw what the publishes counting on it wrote
            owed = OwedRead()
        if more:
            return fanned_out  # a full batch asked for another task, whose take owes our read
        if count and time.monotonic() < until:
            if fan_out_request_hold(promise=count >= FAN_OUT_PROMISE_EVENTS):
                # A pause of up to half the promise's length needs no take.
                promised_until = time.monotonic() + FAN_OUT_PROMISE_SECONDS / 2
            taken = False
        elif not taken and not count and read_at < promised_until:
            # A pause in a fast stream: publishers still count on the promise, no request.
            _promise_poll(promised_until)
        elif not taken:
            taking = fan_out_request_take()
            owed = taking if taking.until else owed
            taken = True
        elif read_at < owed.until:
            # Publishers that read the promise before the take commit within its length:
            # read again until a read has started after that, shortly when nothing came.
            if not count:
                _promise_poll(owed.until)
        else:
            return fanned_out  # nothing came since the request was taken, or time is up


def _promise_poll(until: float) -> None:
    """Wait before reading again, while a promise runs (until ``until`` at the latest)."""
    time.sleep(max(0.0, min(FAN_OUT_PROMISE_POLL_SECONDS, until - time.monotonic())))


def events_fan_out_waiting(
    *, limit: int | None = None, created_before: dt.datetime | None = None, dispatch: bool = False
) -> int:
    """Fan out the events awaiting it, oldest first, up to ``limit`` in one transaction.

    Rows another worker holds are skipped. A full batch (``limit`` events, or
    ``WEBHOOKS_FAN_OUT_MAX_BYTES`` of bodies) asks for another task rather than looping, so a
    backlog does not hold a worker past its time limit. An event whose deliveries cannot be
    built is left waiting, logged, and passed over, so it cannot hold up the events behind it;
    if the batch fails as a whole, each event is tried on its own. ``created_before`` (the
    sweeper) takes only events older than that. Returns how many events were fanned out.
    """
    return _events_fan_out_waiting(limit=limit, created_before=created_before, dispatch=dispatch)[0]


def _events_fan_out_waiting(
    *, limit: int | None = None, created_before: dt.datetime | None = None, dispatch: bool = False
) -> tuple[int, bool]:
    """``events_fan_out_waiting``, and whether it asked for another task (a full batch)."""
    limit = limit or settings.WEBHOOKS_FAN_OUT_BATCH_SIZE
    hand_off = _deliveries_hand_off if dispatch else deliveries_enqueue
    dispatched = settings.WEBHOOKS_DELIVERY_BATCH_SIZE if dispatch else 0
    passed_over: set[uuid.UUID] = set()
    fanned_out = 0
    while True:
        try:
            batch = _events_fan_out_batch(
                limit=limit,
                passed_over=passed_over,
                created_before=created_before,
                hand_off=hand_off,
                dispatched=dispatched,
            )
        except (SoftTimeLimitExceeded, OperationalError, InterfaceError):
            raise  # a time limit, or the database unreachable: the task is retried as a whole
        except Exception as exc:
            if _deleted_meanwhile(exc):
                logger.info(
                    "Batch fan-out wrote deliveries for a webhook or event deleted meanwhile; "
                    "fanning out its events again one by one"
                )
            else:
                logger.exception("Batch fan-out failed; fanning out its events one by one")
            return fanned_out + _events_fan_out_one_by_one(
                limit=limit, passed_over=passed_over, created_before=created_before
            ), False
        fanned_out += len(batch.fanned_out)
        passed_over.update(batch.failed)
        passed_over.update(batch.busy)  # the worker splitting them marks them fanned out
        if batch.more and not batch.fanned_out:
            continue  # a whole batch of events that failed or are busy: look past them now
        if batch.more:
            fan_out_request(force=True)
        return fanned_out, batch.more


def event_fan_out(*, event_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Fan out one event now; return the ids of the deliveries created.

    Idempotent: an event is fanned out once (its row is claimed and marked in one
    transaction); a later call, or one while another worker holds the event, returns ``[]``.
    A custom body that cannot be rendered for this event fails its delivery with the reason,
    the others go on. Raises what building the deliveries raised (the event stays waiting).
    """
    batch = _events_fan_out_batch(limit=1, passed_over=set(), event_ids=[event_id], strict=True)
    return batch.deliveries


def _deliveries_hand_off(ids: list[uuid.UUID], *, bulk: bool = False) -> None:
    """Send the first deliveries from this process at once, enqueue the rest for any worker
    (``bulk``: behind other messages, see ``deliveries_enqueue``).

    The first ``WEBHOOKS_DELIVERY_BATCH_SIZE`` were stored waiting, without a message
    (``_hand_off_prepare``): what their webhooks' limits do not let go now stays so, with no
    second write, and if this process dies first the sweeper sends them.
    """
    from .dispatch import deliveries_dispatch

    first = settings.WEBHOOKS_DELIVERY_BATCH_SIZE
    deliveries_enqueue(ids[first:], bulk=bulk)
    deliveries_dispatch(delivery_ids=ids[:first], waiting=True)


class _HandOffWithin:
    """The hand-off's claim of the first deliveries a fan-out sends from its own process, made
    in the transaction that inserts them (``deliveries_dispatch_inserted``): one commit, and
    one flush to the disk, where a claim of its own after that commit made two.

    ``claim`` makes it, inside the transaction; ``committing`` wraps the transaction: if that
    fails, the claim's send slots are given back, and if only the answer to its commit was
    lost, the transaction's id tells whether it went through (the claim's, as
    ``claim._claim_commit`` does for its own). ``send``, after the commit, sends what it
    leased and enqueues the rest as the hand-off does (``_deliveries_hand_off``).
    """

    def __init__(self) -> None:
        self.sending: InsertedClaim | None = None
        self.parked: set[uuid.UUID] = set()

    def claim(
        self,
        deliveries: list[Delivery],
        pending: list[uuid.UUID],
        dispatched: int,
        along: WriteAlong | None = None,
    ) -> bool:
        """Claim the first ``dispatched`` of ``pending``; False where it is not done here
        (SQLite, a caller's transaction, no send slot free): the hand-off claims them after
        the commit. The rest of ``pending`` that the claim finds would only wait (their
        webhook full, waiting for its probe, or failing while the process's share is full:
        ``claim._Plan.holds``) are stored waiting, without a message: what their webhook
        waits for takes them up. ``along``: the caller's write, sent with the claim's lock
        when the claim takes one (``WriteAlong.done``)."""
        if not dispatched or connection.vendor != "postgresql" or not transaction_own():
            return False
        from .dispatch import deliveries_dispatch_inserted

        first = set(pending[:dispatched])
        rest = set(pending[dispatched:])
        self.sending = deliveries_dispatch_inserted(
            deliveries=[delivery for delivery in deliveries if delivery.pk in first],
            rest=[delivery for delivery in deliveries if delivery.pk in rest],
            along=along,
        )
        if self.sending is None:
            return False
        self.parked = set(map(uuid.UUID, self.sending.outcome.rest_waiting))
        rows_update(Delivery, self.parked, enqueued_at=None)
        return True

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError):
            if self.sending is None or not self.sending.committed_after_loss():
                self._abandon()
                raise
            logger.warning(
                "A fan-out committed but its answer was lost with the connection; the %d "
                "deliveries it claimed are sent",
                len(self.sending.outcome.claims),
            )
        except BaseException:
            self._abandon()  # rolled back: nothing was leased
            raise

    def _abandon(self) -> None:
        if self.sending is not None:
            self.sending.abandon()
            self.sending = None

    def send(self, rest: list[uuid.UUID], *, bulk: bool = False) -> None:
        """After the commit: send what was claimed, and enqueue ``rest`` for any worker (but
        what waits for a full webhook; ``bulk`` as for ``deliveries_enqueue``)."""
        if self.sending is not None:
            deliveries_enqueue([pk for pk in rest if pk not in self.parked], bulk=bulk)
            self.sending.send()


def _hand_off_prepare(deliveries: list[Delivery], dispatched: int) -> list[uuid.UUID]:
    """The ids of the pending deliveries, for the hand-off after commit. The first
    ``dispatched`` of them, which the hand-off sends from this process, are stored waiting
    (no ``enqueued_at``: no message), as the claim leaves what it does not take."""
    pending = [delivery for delivery in deliveries if delivery.enqueued_at is not None]
    for delivery in pending[:dispatched]:
        delivery.enqueued_at = None
    return [delivery.id for delivery in pending]


# --- The one implementation -----------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    fanned_out: list[uuid.UUID]
    failed: list[uuid.UUID]
    more: bool  # events may be waiting beyond this batch
    deliveries: list[uuid.UUID] = field(default_factory=list)
    # Events for many webhooks that another worker is fanning out in pieces right now.
    busy: list[uuid.UUID] = field(default_factory=list)


class HandOff(Protocol):
    """Takes a fan-out's pending deliveries after its commit (``bulk``: one school's large
    fan-out, whose messages go behind everyone else's)."""

    def __call__(self, ids: list[uuid.UUID], *, bulk: bool = False) -> None: ...


def _events_fan_out_batch(
    *,
    limit: int,
    passed_over: set[uuid.UUID],
    event_ids: list[uuid.UUID | str] | None = None,
    created_before: dt.datetime | None = None,
    strict: bool = False,
    hand_off: HandOff | None = None,
    dispatched: int = 0,
) -> _Batch:
    """Claim up to ``limit`` waiting events and turn them into deliveries in one transaction.

    An event for more than ``WEBHOOKS_FAN_OUT_CHUNK_SIZE`` webhooks is fanned out after the
    transaction, in pieces (``_event_fan_out_in_pieces``). ``strict`` raises the first event's
    failure instead of passing the event over. ``hand_off`` takes the pending deliveries after
    commit (default: enqueue them); it sends the first ``dispatched`` from this process.
    """
    hand_off = hand_off or deliveries_enqueue
    now = db_now()
    large: list[tuple[Event, list[Subscription], Bodies]] = []
    within = _HandOffWithin()
    with within.committing(), transaction.atomic():
        events, versions = _events_waiting(
            limit=limit,
            passed_over=passed_over,
            event_ids=event_ids,
            created_before=created_before,
        )
        more = len(events) >= limit and event_ids is None
        by_school = (
            subscriptions_active_by_school(
                school_ids={event.school_id for event in events}, versions=versions
            )
            if events
            else {}
        )
        # Webhooks an event already has its delivery for: pieces committed before a crash
        # (``_event_fan_out_in_pieces``), if fewer webhooks match it now. Looked up one event
        # at a time only (``strict``): a batch that meets such an event fails on the unique
        # delivery per event and webhook, and its events are then fanned out one by one.
        made = _deliveries_made([event.pk for event in events]) if strict else {}
        deliveries: list[Delivery] = []
        fanned_out: list[uuid.UUID] = []
        failed: list[uuid.UUID] = []
        size = 0
        bulk = False  # an event for more webhooks than a piece holds, built here (``strict``)
        for event in events:
            if size > settings.WEBHOOKS_FAN_OUT_MAX_BYTES:
                more = True  # the rest stay waiting, for the next task
                break
            try:
                matching = subscriptions_receiving(
                    event=event, subscriptions=by_school.get(event.school_id, [])
                )
                if event.pk in made:
                    matching = [sub for sub in matching if sub.pk not in made[event.pk]]
                bodies = Bodies(event)
                if len(matching) > settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE and not strict:
                    # Built after this transaction, but within this task's budget all the same.
                    size += bodies.size_of(matching)
                    large.append((event, matching, bodies))
                    continue
                built = [
                    delivery_build(event=event, subscription=subscription, now=now, bodies=bodies)
                    for subscription in matching
                ]
                bulk = bulk or len(matching) > settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                if strict:
                    raise
                logger.exception("Fan-out of event %s failed; it will be tried again", event.id)
                failed.append(event.id)
                continue
            deliveries += built
            fanned_out.append(event.id)
            size += sum(len(delivery.body) for delivery in built)
        pending = _hand_off_prepare(deliveries, dispatched)
        deliveries_insert(deliveries)
        # The events are marked fanned out by the claim's first statement where it makes one
        # here (one round trip fewer), by their own otherwise.
        mark = _events_mark(fanned_out, now)
        if pending and not within.claim(deliveries, pending, dispatched, along=mark):
            after_commit(hand_off, pending, bulk=bulk)
        if mark is not None:
            mark.send()
    within.send(pending[dispatched:], bulk=bulk)
    busy: list[uuid.UUID] = []
    for event, matching, bodies in large:
        try:
            created = _event_fan_out_in_pieces(event, matching, hand_off, dispatched, bodies)
        except (SoftTimeLimitExceeded, OperationalError, InterfaceError):
            raise  # as for a batch: the task is retried, the pieces written are kept
        except Exception:
            logger.exception("Fan-out of event %s failed; it will be tried again", event.id)
            failed.append(event.id)
            continue
        if created is None:
            busy.append(event.id)
        else:
            fanned_out.append(event.id)
    # Metrics: the one place fan-out is measured (deliveries/metrics.py).
    events_fan_out_observe(events=events, fanned_out=fanned_out, now=now)
    return _Batch(
        fanned_out=fanned_out,
        failed=failed,
        more=more,
        deliveries=[delivery.id for delivery in deliveries],
        busy=busy,
    )


def _events_mark(fanned_out: list[uuid.UUID], now: dt.datetime) -> WriteAlong | None:
    """The mark of ``fanned_out`` events (``fanned_out_at``) as a write that can go along with
    another statement on PostgreSQL (``WriteAlong``); None when there is nothing to mark, or
    on SQLite, where it is made here."""
    if not fanned_out:
        return None
    if connection.vendor != "postgresql":
        rows_update(Event, fanned_out, fanned_out_at=now)
        return None
    return rows_update_along(Event, fanned_out, fanned_out_at=now)


def _events_waiting(
    *,
    limit: int,
    passed_over: set[uuid.UUID],
    event_ids: list[uuid.UUID | str] | None,
    created_before: dt.datetime | None,
) -> tuple[list[Event], dict[int, int] | None]:
    """Up to ``limit`` events awaiting fan-out, oldest first, locked, with their school; rows
    another worker holds, and ``passed_over``, are skipped. In the caller's transaction.
    Also each of their schools' ``webhooks_version`` where the read returns it (the task's
    read on PostgreSQL; else None): ``subscriptions_active_by_school`` then reads only the
    webhooks of the schools it has not read at that version.

    The task's read (no ``event_ids``) on PostgreSQL is one fixed statement, its rows made
    into events without a raw query set: building the ORM query cost more CPU than the rest
    of a small batch's reads, and a raw query set's matching of columns to fields about
    150 µs more, once per batch.
    """
    if connection.vendor == "postgresql" and event_ids is None:
        # Walk the partial index in order: the entries of events fanned out earlier are marked
        # dead as the scan passes them, and later batches skip them. A bitmap scan (the
        # planner's choice when few events wait) would read every one of them again until the
        # next vacuum. One setting, in the batch's own transaction, rather than
        # ``common.sql.plans_in_index_order``: this runs in every fan-out task, and that
        # helper's savepoint would cost two more round trips each time.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute(
                _EVENTS_WAITING, [list(passed_over), created_before, created_before, limit]
            )
            rows = cursor.fetchall()
        if not transaction_own():
            # Inside a caller's transaction the setting would outlive this read (the caller's
            # reads could not use the bitmap scans they plan for).
            with connection.cursor() as cursor:
                cursor.execute("RESET enable_bitmapscan")
        return _events_from_rows(rows), {row[-2]: row[-1] for row in rows}
    waiting = (
        Event.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("school")
        .filter(fanned_out_at__isnull=True)
        .exclude(pk__in=passed_over)
    )
    if event_ids is not None:
        waiting = waiting.filter(pk__in=event_ids)
    if created_before is not None:
        waiting = waiting.filter(created_at__lt=created_before)
    return list(waiting.order_by("created_at", "id")[:limit]), None


def _events_from_rows(rows: list[tuple[Any, ...]]) -> list[Event]:
    """Events, each with its school, from rows of ``_EVENTS_WAITING``."""
    events = models_from_rows(Event, _EVENT_FIELDS, rows)
    width = len(_EVENT_FIELDS)
    for event, row in zip(events, rows, strict=True):
        event.school = School.from_db(
            connection.alias, _SCHOOL_FIELDS, row[width : width + len(_SCHOOL_FIELDS)]
        )
    return events


def _deliveries_made(event_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[uuid.UUID]]:
    """The webhooks each of ``event_ids`` already has its fan-out delivery for (none, unless
    a fan-out in pieces stopped part-way): one look-up in the one-per-event index."""
    if not event_ids:
        return {}
    made: dict[uuid.UUID, set[uuid.UUID]] = {}
    rows = Delivery.objects.filter(event_id__in=event_ids, replay_number=0).values_list(
        "event_id", "subscription_id"
    )
    for event_id, subscription_id in rows:
        made.setdefault(event_id, set()).add(subscription_id)
    return made


_EVENT_FIELDS = fields_in_order(Event)
# What fan-out reads of an event's school (the rest is loaded if ever touched).
_SCHOOL_FIELDS = ["id", "slug", "timezone"]
# The events alone first, in the order of ``event_outbox_in_order_idx``: the scan reads the
# batch it takes and stops, whatever the statistics say of the outbox (joined first, a stale
# estimate of a few waiting events had PostgreSQL join and sort all of them).
# Last, the school's id again and its ``webhooks_version`` (``subscriptions`` migration 0011,
# a column only the database writes): the version of its webhooks this batch reads.
_EVENTS_WAITING = (  # noqa: S608 - column and table names only
    "SELECT e.*, {schools}, s.id, s.webhooks_version FROM (SELECT {events} FROM {event_table} "
    "WHERE "
    "fanned_out_at IS NULL AND NOT (id = ANY(%s::uuid[])) AND "
    "(%s::timestamptz IS NULL OR created_at < %s) ORDER BY created_at, id LIMIT %s "
    "FOR UPDATE SKIP LOCKED) AS e JOIN {school_table} AS s ON s.id = e.school_id "
    "ORDER BY e.created_at, e.id"
).format(
    events=", ".join(str(field.column) for field in _EVENT_FIELDS),
    schools=", ".join(f"s.{column}" for column in columns_of(School, _SCHOOL_FIELDS)),
    event_table=Event._meta.db_table,
    school_table=School._meta.db_table,
)


def subscriptions_receiving(
    *, event: Event, subscriptions: Iterable[Subscription]
) -> list[Subscription]:
    """The webhooks among ``subscriptions`` that receive ``event``, in their order: the one
    place fan-out decides it.

    A webhook receives an event when one of its topics matches the type and its profile's
    vendor has it (``Subscription.matches``), and its payload filter passes the event's
    ``data`` (``webhook_engine.filters``). No query: the filter is read from the loaded
    webhook (``FAN_OUT_FIELDS``) and compiled once per loaded instance, so a batch of events
    for a school's webhooks compiles each filter once. A stored filter that no longer compiles
    (the rules tightened since it was saved) passes nothing, and is logged: sending a school's
    data to a receiver that asked to see only some of it is worse than sending none.
    """
    event_type, data = event.type_id, event.data
    return [
        subscription
        for subscription in subscriptions
        if subscription.matches(event_type) and _payload_passes(subscription, event, data)
    ]


def _payload_passes(subscription: Subscription, event: Event, data: Any) -> bool:
    """Whether the event's data passes the webhook's filter. A compiled filter does not raise;
    if one ever did, that webhook gets nothing (logged) and the event still reaches the
    school's other webhooks."""
    try:
        return bool(_payload_predicate(subscription)(data))
    except Exception:
        logger.exception(
            "Payload filter of webhook %s failed on event %s; the event is not sent to it",
            subscription.pk,
            event.pk,
        )
        return False


def _payload_predicate(subscription: Subscription) -> Predicate:
    """The webhook's compiled payload filter, cached on the instance for as long as its
    ``payload_filter`` is the same object."""
    spec = subscription.payload_filter
    cached = subscription.__dict__.get("_payload_predicate")
    if cached is not None and cached[0] is spec:
        return cached[1]
    try:
        predicate = filter_compile(spec)
    except FilterInvalid as exc:
        logger.error(
            "Payload filter of webhook %s is invalid, it passes nothing: %s", subscription.pk, exc
        )
        predicate = _nothing
    subscription.__dict__["_payload_predicate"] = (spec, predicate)
    return predicate


def _nothing(data: object) -> bool:
    return False


def _event_fan_out_in_pieces(
    event: Event,
    subscriptions: list[Subscription],
    hand_off: HandOff,
    dispatched: int = 0,
    bodies: Bodies | None = None,
) -> int | None:
    """Fan out an event for many webhooks a piece at a time, each piece committed and handed
    to the workers at once, so the first attempts start while the rest is being built.

    One worker at a time (a PostgreSQL advisory lock on the event; None if another holds
    it). A piece written before a crash is not written again, and the event is marked fanned
    out after its last piece. Returns the deliveries created.
    """
    with _event_lock(event.pk) as locked:
        if not locked:
            return None
        bodies = bodies or Bodies(event)
        # Pieces written before a crash are not written again.
        done = set(Delivery.objects.filter(event=event).values_list("subscription_id", flat=True))
        remaining = [subscription for subscription in subscriptions if subscription.pk not in done]
        created = 0
        for piece_of in _pieces(remaining, settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE):
            now = db_now()
            piece = [
                delivery_build(event=event, subscription=subscription, now=now, bodies=bodies)
                for subscription in piece_of
            ]
            with transaction.atomic():
                pending = _hand_off_prepare(piece, dispatched)
                deliveries_insert(piece)
                if pending:
                    after_commit(hand_off, pending, bulk=True)
            created += len(piece)
        Event.objects.filter(pk=event.pk, fanned_out_at__isnull=True).update(fanned_out_at=db_now())
        logger.info("Event %s fanned out to %d webhooks in pieces", event.pk, created)
        return created


# The first piece is small, so that the first attempts start after a few milliseconds of
# building rather than after a whole piece's.
_FIRST_PIECE = 100


def _pieces(items: list[Subscription], size: int) -> Iterator[list[Subscription]]:
    """``items`` in consecutive pieces: the first of at most ``_FIRST_PIECE``, then ``size``."""
    start, length = 0, min(size, _FIRST_PIECE)
    while start < len(items):
        yield items[start : start + length]
        start += length
        length = size


@contextlib.contextmanager
def _event_lock(event_id: uuid.UUID) -> Iterator[bool]:
    """A session advisory lock on the event (PostgreSQL); elsewhere nothing to lock."""
    if connection.vendor != "postgresql":
        yield True
        return
    key: list[int | str] = [_EVENT_LOCK_CLASS, str(event_id)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key)
        locked = bool(cursor.fetchone()[0])
    try:
        yield locked
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


_EVENT_LOCK_CLASS = 0x57484C


def _deleted_meanwhile(exc: BaseException) -> bool:
    """Whether a fan-out's commit failed because a webhook (or an event) its deliveries refer to
    was deleted after it read them: the foreign keys are checked at commit. Nothing is wrong;
    its events are fanned out again, to the webhooks that exist then."""
    cause = exc.__cause__
    return (
        isinstance(exc, IntegrityError)
        and isinstance(cause, psycopg.errors.ForeignKeyViolation)
        and cause.diag.table_name == Delivery._meta.db_table
    )


def _events_fan_out_one_by_one(
    *, limit: int, passed_over: set[uuid.UUID], created_before: dt.datetime | None
) -> int:
    """Fall-back for a batch that failed as a whole: each waiting event in its own transaction."""
    event_ids = [
        event_id
        for event_id in events_awaiting_fan_out(
            created_before=created_before or db_now(), limit=limit
        )
        if event_id not in passed_over
    ]
    fanned_out = 0
    for event_id in event_ids:
        try:
            batch = _events_fan_out_batch(
                limit=1, passed_over=set(), event_ids=[event_id], strict=True
            )
            fanned_out += len(batch.fanned_out)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("Fan-out of event %s failed; it will be tried again", event_id)
    if len(event_ids) >= limit and fanned_out:
        fan_out_request(force=True)
    return fanned_out


class Bodies:
    """The bodies of one event, rendered once per content type, template and profile: the
    webhooks of a school mostly share them, so a thousand deliveries cost one rendering."""

    def __init__(self, event: Event) -> None:
        self.event = event
        school = event.school
        self.envelope = envelope_build(
            event_id=str(event.id),
            event_type=event.type_id,
            school_id=school.id,
            school_slug=school.slug,
            occurred_at=event.occurred_at,
            data=event.data,
            tz=school.tzinfo,
        )
        self._rendered: dict[tuple[str, str, str], tuple[bytes, str] | BodyTemplateError] = {}

    def render(self, content_type: str, template: str, profile: str) -> tuple[bytes, str]:
        """The body and its ``Content-Type``; raises ``BodyTemplateError`` (every time)."""
        key = (content_type, template, profile)
        if key not in self._rendered:
            try:
                self._rendered[key] = render_with_template(
                    self.envelope,
                    content_type=content_type,
                    template=template,
                    unix_timestamp=int(self.event.occurred_at.timestamp()),
                    profile=profile,
                )
            except BodyTemplateError as exc:
                self._rendered[key] = exc
        rendered = self._rendered[key]
        if isinstance(rendered, BodyTemplateError):
            raise rendered
        return rendered

    def size_of(self, subscriptions: Iterable[Subscription]) -> int:
        """The bytes of the bodies of this event's deliveries to ``subscriptions`` (each
        distinct body rendered once; one that cannot be rendered is empty)."""
        size = 0
        for subscription in subscriptions:
            try:
                body, _content_type = self.render(
                    subscription.content_type, subscription.body_template, subscription.profile
                )
            except BodyTemplateError:
                continue
            size += len(body)
        return size


def delivery_wanted(*, event: Event, subscription: Subscription) -> bool:
    """Whether ``subscription`` gets a delivery of ``event``: the one rule fan-out and replay
    (``replay.py``) share (``subscriptions_receiving``: topics, profile, payload filter)."""
    return bool(subscriptions_receiving(event=event, subscriptions=[subscription]))


# Why a delivery was not sent: stored in English; Send Test words it in the reader's language.
TEMPLATE_FAILURE = gettext_noop("The webhook body could not be rendered for this event: %(reason)s")


def delivery_build(
    *, event: Event, subscription: Subscription, now: dt.datetime, bodies: Bodies | None = None
) -> Delivery:
    """The delivery of ``event`` to ``subscription``, its body rendered (unsaved).

    A body template that cannot be rendered for the event gives a failed delivery with the
    reason (nothing will be sent); anything else is pending and due ``now`` (held, without a
    message, if the webhook is paused). ``bodies`` shares
    the renderings between the deliveries of one event.
    """
    delivery = Delivery(
        school_id=event.school_id,
        event=event,
        subscription=subscription,
        event_type=event.type_id,
        content_type=CONTENT_TYPES[subscription.content_type],
        profile=subscription.profile,
        created_at=now,
    )
    try:
        delivery.body, delivery.content_type = (bodies or Bodies(event)).render(
            subscription.content_type, subscription.body_template, subscription.profile
        )
    except BodyTemplateError as exc:
        delivery.body = b""
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error_kind = ErrorKind.TEMPLATE
        delivery.last_error = TEMPLATE_FAILURE % {"reason": exc}  # stored: in English
        logger.warning("Delivery of %s to %s not sent: %s", event.id, subscription.pk, exc)
        return delivery
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    # A paused webhook's delivery is held: no message until it resumes (pausing.py).
    delivery.enqueued_at = None if subscription.paused_at else now
    return delivery


_COPY_DELIVERIES = "COPY {table} ({columns}) FROM STDIN".format(
    table=Delivery._meta.db_table,
    columns=", ".join(str(field.column) for field in Delivery._meta.concrete_fields),
)


def deliveries_insert(deliveries: list[Delivery]) -> None:
    """Insert new deliveries, in the caller's transaction.

    On PostgreSQL with ``COPY``: a thousand rows cost a few milliseconds, against tens for a
    multi-row ``INSERT`` whose every value is a parameter. Elsewhere ``bulk_create``.
    """
    if not deliveries:
        return
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(deliveries, batch_size=500)
        return
    attributes = [field.attname for field in Delivery._meta.concrete_fields]
    with connection.cursor() as cursor, cursor.cursor.copy(_COPY_DELIVERIES) as copy:
        for delivery in deliveries:
            copy.write_row([getattr(delivery, name) for name in attributes])


def deliveries_enqueue_selection(ids: list[uuid.UUID]) -> None:
    """Send the messages of a selection of deliveries (a replay, a "send now", a sweep): more
    than one message's worth is a large operation, sent behind every other message."""
    deliveries_enqueue(ids, bulk=len(ids) > settings.WEBHOOKS_DELIVERY_BATCH_SIZE)


def deliveries_enqueue(
    ids: Iterable[uuid.UUID | str], *, countdown: float | None = None, bulk: bool = False
) -> None:
    """Send delivery tasks of up to ``WEBHOOKS_DELIVERY_BATCH_SIZE`` ids each, over one connection.

    ``bulk``: the deliveries of one large operation (an event for more than
    ``WEBHOOKS_FAN_OUT_CHUNK_SIZE`` webhooks; a replay, a "send now" or a sweep of more than
    one message's worth). Their messages carry ``BULK_PRIORITY``: a worker takes every other
    message in the queue first, so the other schools' fan-outs and deliveries do not wait
    behind thousands of them.

    A failure is logged, not raised: the rows are committed and the sweeper re-drives them.
    """
    ids = [str(delivery_id) for delivery_id in ids]
    if not ids:
        return
    size = settings.WEBHOOKS_DELIVERY_BATCH_SIZE
    app = current_app
    priority = {"priority": BULK_PRIORITY} if bulk else {}
    try:
        with app.producer_or_acquire() as producer:
            for start in range(0, len(ids), size):
                app.send_task(
                    DELIVER_TASK,
                    args=[ids[start : start + size]],
                    countdown=countdown,
                    producer=producer,
                    retry_policy=settings.WEBHOOKS_PUBLISH_RETRY_POLICY,
                    **priority,
                )
    except Exception:
        logger.exception(
            "Could not enqueue %d deliveries; the sweeper will re-drive them", len(ids)
        )
