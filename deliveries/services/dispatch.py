"""The sending engine of a worker process: a task hands its claimed deliveries over and returns.

A ``deliveries.deliver`` task claims its deliveries (``claim.py``), submits the requests to
this process's send threads and returns at once, so a worker slot is never held while a
receiver takes its time: one school's dead receiver cannot starve another school's webhooks
(its concurrency limit bounds how many of the threads it can hold). One recorder thread writes
the results in batches as they come in, across tasks (``record.py``), with one database
connection.

Nothing is lost if the process dies: a delivery stays leased until its result is recorded; a
renewer thread extends the leases of the deliveries in flight every third of
``WEBHOOKS_LEASE_SECONDS``, so the leases of a killed process run out within that time and the
sweeper sends its deliveries again. The
process has ``WEBHOOKS_SEND_THREADS`` slots; a task claims only as many deliveries as there
are free slots and waits for more, so claimed deliveries never queue up here past their lease.
Of those slots, attempts to failing receivers take at most ``WEBHOOKS_FAILING_CONCURRENCY``
(``claim.FailingRoom``): the retries and probes of webhooks whose receivers fail on the network,
and every webhook of a receiver host whose last attempt here failed so and which answered
nothing here within a request's deadline (forgotten once it has not been tried here for
``_DOWN_FORGET_SECONDS``), or whose requests here have been in flight for
``WEBHOOKS_SILENT_HOST_SECONDS`` with no answer. Only the attempts that were not already
claimed as failing tell: the retries and probes of failing receivers, expected to hang, say
nothing new of their host. A host that still answers some of its receivers (many schools share
it, one school's receiver hangs) is neither: each receiver of it that fails counts as failing
by its own failures. When many receivers go down at once (a receiver host that many schools'
webhooks point at), the attempts sent to them before they fell silent hang until they time out
(and take room in the share meanwhile), but their retries and probes, and the deliveries to
that host's other webhooks, then leave the other receivers the rest of the threads.
On a warm shutdown the process lets what is in flight finish and be recorded first.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from common.clock import db_now
from common.sql import WriteAlong
from webhook_engine.destinations import receiver_host
from webhook_engine.errors import NETWORK_FAILURES, ErrorKind
from webhook_engine.transport import TransportResult

from ..metrics import failing_held_observe
from ..models import Delivery
from .attempts import claims_followup
from .claim import (
    Claim,
    ClaimOutcome,
    FailingRoom,
    claim_committed_after_loss,
    deliveries_claim,
    deliveries_claim_inserted,
    deliveries_claim_waiting,
    leases_renew,
)
from .config import open_files_fit
from .record import (
    CircuitChanges,
    RecordProgress,
    deliveries_record,
    receivers_gone_disable,
    shares_widen,
)
from .send import request_build, request_send, sender_pool

logger = logging.getLogger(__name__)

# The recorder writes what arrived within this long of the first result together (it stops
# waiting as soon as every attempt in flight in this process has reported).
_RECORD_GATHER_SECONDS = 0.005
_RECORD_BATCH_MAX = 200
# A claim waits this long at most for a free send slot before giving up on the rest of its ids.
_SLOT_WAIT_SECONDS = 30.0
# A full room for failing receivers (``claim.FailingRoom``) is logged at most this often.
_FAILING_FULL_LOG_SECONDS = 60.0
# Silent receiver hosts (``Dispatcher._hosts_failing``) are looked for at most this often.
_SILENT_CHECK_SECONDS = 0.1
# A receiver host found down and not tried here since for this long is forgotten (its
# webhooks' own failure streaks still count), so that a long-running process does not keep
# every host that ever went down; looked for at most every ``_DOWN_PRUNE_SECONDS``.
_DOWN_FORGET_SECONDS = 600.0
_DOWN_PRUNE_SECONDS = 60.0
# The clock of the receiver hosts' silence.
_clock = time.monotonic


@dataclass(frozen=True)
class _Result:
    claim: Claim
    result: TransportResult


class Dispatcher:
    """This process's send slots, send threads and recorder (see the module docstring)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.Semaphore(slots)
        self._results: queue.SimpleQueue[_Result | None] = queue.SimpleQueue()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._held: dict[uuid.UUID, uuid.UUID] = {}  # in flight: delivery id -> lease token
        # In flight within the room for failing receivers (``claim.FailingRoom``), by delivery.
        self._failing: set[tuple[uuid.UUID, uuid.UUID]] = set()  # (delivery id, lease token)
        # Receiver hosts whose last attempt here failed on the network, not answered since.
        # Replaced, not changed, so that each claim can take it as it is (a copy per claim would
        # cost as much as the hosts listed).
        self._hosts_down: frozenset[str] = frozenset()
        self._hosts_down_at: dict[str, float] = {}  # when each was last found down
        # When each receiver host last answered here (kept for a request's deadline): one
        # that answered within it is not down after a network failure, for some of its
        # receivers answer (a host many schools share, one school's receiver hanging); nor
        # silent, if that was within WEBHOOKS_SILENT_HOST_SECONDS.
        self._hosts_answered: dict[str, float] = {}
        self._hosts_down_pruned = _clock()
        # Receiver hosts with attempts in flight here: how many, and how many of them were
        # claimed within the failing receivers' room; and since when attempts not claimed so
        # have been in flight to each, without a break (its silence counts from then, or from
        # its last answer).
        self._hosts_flight: dict[str, list[int]] = {}
        self._hosts_waiting: dict[str, float] = {}
        # Hosts silent for WEBHOOKS_SILENT_HOST_SECONDS with requests in flight, as of when
        # they were last looked for (``_hosts_failing``).
        self._hosts_silent: frozenset[str] = frozenset()
        self._hosts_silent_at = -_SILENT_CHECK_SECONDS
        # ``_hosts_down | _hosts_silent``, kept until either changes (None: to be made).
        self._hosts_failing_union: frozenset[str] | None = None
        self._hosts_failing_of: frozenset[str] = frozenset()
        self._failing_warned = -_FAILING_FULL_LOG_SECONDS  # when a full room was last logged
        self._stopped = threading.Event()
        # Set on a warm shutdown: finished attempts no longer take up the deliveries waiting
        # behind them (the sweeper or another worker sends those), so the drain ends.
        self._closing = threading.Event()
        self._recorder = threading.Thread(
            target=self._record_forever, name="webhook-recorder", daemon=True
        )
        self._recorder.start()
        threading.Thread(target=self._renew_forever, name="webhook-leases", daemon=True).start()

    # --- Taking work ------------------------------------------------------------------------

    def dispatch(self, delivery_ids: list[str], *, waiting: bool = False) -> int:
        """Claim and send the deliveries among ``delivery_ids`` that may go now; return how
        many were sent off. Returns once they are in flight, not when they are answered.
        ``waiting``: they wait without a message already (``deliveries_claim``)."""
        remaining = list(delivery_ids)
        sent = 0
        deadline = time.monotonic() + _SLOT_WAIT_SECONDS
        while remaining:
            slots = self._slots_take(len(remaining), deadline)
            if not slots:
                logger.warning(
                    "No send slot free for %.0f s; %d deliveries left to the sweeper",
                    _SLOT_WAIT_SECONDS,
                    len(remaining),
                )
                return sent
            try:
                outcome = deliveries_claim(
                    delivery_ids=remaining,
                    capacity=slots,
                    renewed=True,
                    waiting=waiting,
                    failing=self._failing_room(),
                )
            except BaseException:
                self._slots_give(slots)
                raise
            self._slots_give(slots - len(outcome.claims))
            self._failing_full_log(outcome)
            self._submit(outcome.claims)
            sent += len(outcome.claims)
            # After the claims are in flight: if this fails (the broker or the database gone),
            # what it left goes to the sweeper, and what was claimed is still sent.
            claims_followup(remaining, outcome)
            remaining = outcome.unclaimed
        return sent

    def dispatch_inserted(
        self,
        deliveries: list[Delivery],
        rest: list[Delivery] | None = None,
        along: WriteAlong | None = None,
    ) -> InsertedClaim | None:
        """Claim, in the caller's transaction that has just inserted them, the deliveries among
        ``deliveries`` that may go now, with the send slots free now; None when none is (the
        caller dispatches them after its commit instead). See ``InsertedClaim``; ``rest`` and
        ``along`` as for ``deliveries_claim_inserted``."""
        slots = self._slots_take_now(len(deliveries))
        if not slots:
            return None
        try:
            outcome = deliveries_claim_inserted(
                deliveries=deliveries,
                capacity=slots,
                failing=self._failing_room(),
                rest=rest,
                along=along,
            )
        except BaseException:
            self._slots_give(slots)
            raise
        self._failing_full_log(outcome)
        return InsertedClaim(self, outcome, slots, [str(delivery.pk) for delivery in deliveries])

    def _slots_take(self, wanted: int, deadline: float) -> int:
        """At least one free slot (waiting for it until ``deadline``), and more if free."""
        if not self._free.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return 0
        taken = 1
        while taken < wanted and self._free.acquire(blocking=False):
            taken += 1
        return taken

    def _slots_give(self, count: int) -> None:
        for _ in range(count):
            self._free.release()

    def _submit(self, claims: list[Claim]) -> None:
        with self._lock:
            self._in_flight += len(claims)
        for claim in claims:
            self._submit_one(claim)

    def _submit_one(self, claim: Claim) -> None:
        """Send one claim from the send threads; it holds a slot and counts as in flight."""
        host = receiver_host(claim.delivery.subscription.url)
        with self._lock:
            self._held[claim.delivery.pk] = claim.token
            self._attempt_in(claim, host)
        try:
            request = request_build(claim)
            sender_pool().submit(self._send, claim, request)
        except Exception as exc:
            logger.exception("Could not send delivery %s", claim.delivery.pk)
            self._results.put(_Result(claim, _unexpected(exc)))

    def _send(self, claim: Claim, request: object) -> None:
        try:
            result = request_send(request)  # type: ignore[arg-type]
        except BaseException as exc:
            logger.exception("Sending delivery %s failed unexpectedly", claim.delivery.pk)
            result = _unexpected(exc)
        if result.status is not None:
            self._heard(receiver_host(claim.delivery.subscription.url))
        self._results.put(_Result(claim, result))

    def _heard(self, host: str) -> None:
        """An answer from ``host`` has just come in: it is not silent, however long the
        recorder takes to get to the result."""
        now = _clock()
        with self._lock:
            self._hosts_answered[host] = now

    # --- Recording --------------------------------------------------------------------------

    def _record_forever(self) -> None:
        while True:
            first = self._results.get()
            if first is None:
                connection.close()  # this thread's own connection
                return
            batch = [first]
            until = time.monotonic() + _RECORD_GATHER_SECONDS
            while len(batch) < _RECORD_BATCH_MAX:
                with self._lock:
                    if len(batch) >= self._in_flight:
                        break  # every attempt in flight here has reported: nothing to wait for
                try:
                    item = self._results.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._results.put(None)
                    break
                batch.append(item)
            with self._lock:  # over: out of the failing receivers' room; their hosts' news
                for item in batch:
                    self._attempt_over(item)
            try:
                continued = self._record(batch)
            except BaseException:
                logger.exception("The recorder failed on %d results", len(batch))
                continued = 0
            with self._lock:
                for item in batch:
                    self._release(item.claim)
            self._done(len(batch) - continued)

    def _failing_room(self) -> FailingRoom:
        """This process's room for attempts to failing receivers, as of now: in it, the
        attempts claimed within it, and the others in flight to a host down or silent (claimed
        while it still looked well, they hold their threads all the same)."""
        with self._lock:
            hosts = self._hosts_failing()
            in_flight = len(self._failing)
            if len(hosts) <= len(self._hosts_flight):
                for host in hosts:
                    flight = self._hosts_flight.get(host)
                    if flight is not None:
                        in_flight += flight[0] - flight[1]
            else:
                for host, flight in self._hosts_flight.items():
                    if host in hosts:
                        in_flight += flight[0] - flight[1]
            return FailingRoom(
                limit=settings.WEBHOOKS_FAILING_CONCURRENCY, in_flight=in_flight, hosts_down=hosts
            )

    def _hosts_failing(self) -> frozenset[str]:
        """The receiver hosts whose webhooks count as failing here (under ``_lock``): those
        down, and those silent, whose requests have been in flight for
        ``WEBHOOKS_SILENT_HOST_SECONDS`` with no answer (a host gone down, its first requests
        not timed out yet). Looked for at most every ``_SILENT_CHECK_SECONDS``."""
        now = _clock()
        if now - self._hosts_down_pruned >= _DOWN_PRUNE_SECONDS:
            self._hosts_down_prune(now)
        if now - self._hosts_silent_at >= _SILENT_CHECK_SECONDS:
            self._hosts_silent_at = now
            since = now - settings.WEBHOOKS_SILENT_HOST_SECONDS
            answered = self._hosts_answered
            silent = frozenset(
                host
                for host, waiting in self._hosts_waiting.items()
                if waiting <= since and answered.get(host, waiting) <= since
            )
            if silent != self._hosts_silent:
                self._hosts_silent = silent
                self._hosts_failing_union = None
        if not self._hosts_silent:
            return self._hosts_down
        if self._hosts_failing_union is None or self._hosts_failing_of is not self._hosts_down:
            self._hosts_failing_union = self._hosts_down | self._hosts_silent
            self._hosts_failing_of = self._hosts_down
        return self._hosts_failing_union

    def _hosts_down_prune(self, now: float) -> None:
        """Forget the hosts down not tried here for ``_DOWN_FORGET_SECONDS`` (under
        ``_lock``): nothing in flight to them, no failure since; and the answers older than a
        request's deadline."""
        self._hosts_down_pruned = now
        answered_since = now - max(
            settings.WEBHOOKS_TIMEOUT_SECONDS, settings.WEBHOOKS_SILENT_HOST_SECONDS
        )
        for host in [h for h, at in self._hosts_answered.items() if at < answered_since]:
            del self._hosts_answered[host]
        forget = now - _DOWN_FORGET_SECONDS
        stale = {
            host
            for host, down_at in self._hosts_down_at.items()
            if down_at <= forget and host not in self._hosts_flight
        }
        if stale:
            for host in stale:
                del self._hosts_down_at[host]
            self._hosts_down = self._hosts_down - stale

    def _attempt_in(self, claim: Claim, host: str) -> None:
        """An attempt goes in flight (under ``_lock``): within the failing receivers' room if
        claimed so, and counted for its receiver host ``host`` (``receiver_host``), which is heard
        from now if it is the only attempt in flight to the host not claimed so."""
        if claim.failing:
            self._failing.add((claim.delivery.pk, claim.token))
        flight = self._hosts_flight.get(host)
        if flight is None:
            flight = self._hosts_flight[host] = [0, 0]
        if not claim.failing and flight[0] == flight[1]:
            # The first request in flight here not expected to fail: the host's silence is
            # counted from now (the retries and probes of its failing receivers, expected to
            # hang, say nothing of the host).
            self._hosts_waiting[host] = _clock()
        flight[0] += 1
        flight[1] += claim.failing

    def _attempt_over(self, item: _Result) -> None:
        """An attempt's result is in (under ``_lock``): it leaves the failing receivers' room
        and its host's count, and its receiver host is down after a network failure of an
        attempt not claimed within the room (unless the host answered here within a request's
        deadline), up again after any answer (heard from when the answer came, ``_heard``)."""
        self._failing.discard((item.claim.delivery.pk, item.claim.token))
        host = receiver_host(item.claim.delivery.subscription.url)
        answered = item.result.status is not None
        flight = self._hosts_flight.get(host)
        if flight is not None:
            flight[0] -= 1
            flight[1] -= item.claim.failing
            if flight[0] <= 0:
                del self._hosts_flight[host]
            if flight[0] <= flight[1]:
                self._hosts_waiting.pop(host, None)  # nothing in flight it is judged by
        if answered and not self._hosts_down:
            return  # the usual case
        if not answered and item.result.error_kind not in NETWORK_FAILURES:
            return  # refused before the network (a blocked destination, ...): says nothing
        if answered:
            if host in self._hosts_down:
                self._hosts_down = self._hosts_down - {host}
                del self._hosts_down_at[host]
            return
        if item.claim.failing:
            return  # a failing receiver's retry or probe failed again: nothing new of its host
        now = _clock()
        answered_at = self._hosts_answered.get(host)
        if answered_at is not None and now - answered_at < settings.WEBHOOKS_TIMEOUT_SECONDS:
            return  # it answers others: each failing receiver there counts by its own failures
        self._hosts_down_at[host] = now
        if host not in self._hosts_down:
            self._hosts_down = self._hosts_down | {host}

    def _failing_full_log(self, outcome: ClaimOutcome) -> None:
        """Count what a claim held back for the failing receivers' share and say, at most once
        a minute, that attempts to failing receivers have taken their share of this process's
        send threads (many receivers are down at once)."""
        if not outcome.failing_held:
            return
        failing_held_observe(outcome.failing_held)
        now = time.monotonic()
        if now - self._failing_warned < _FAILING_FULL_LOG_SECONDS:
            return
        self._failing_warned = now
        logger.warning(
            "Requests to failing receivers have taken their share of this process's send "
            "threads (WEBHOOKS_FAILING_CONCURRENCY=%d): %d more of their deliveries wait",
            settings.WEBHOOKS_FAILING_CONCURRENCY,
            outcome.failing_held,
        )

    def _release(self, claim: Claim) -> None:
        """Stop renewing ``claim``'s lease (under ``_lock``); a later claim of the same
        delivery in this process (its lease ran out meanwhile) keeps its own."""
        if self._held.get(claim.delivery.pk) == claim.token:
            del self._held[claim.delivery.pk]

    def _record(self, batch: list[_Result]) -> int:
        """Write a batch of results, retrying while the database is unreachable; then hand the
        slots it frees to deliveries that waited for those webhooks. Returns how many slots
        went on to new deliveries (their accounting continues with them).

        The results are only in this process's memory: they are retried until the leases of
        the deliveries run out (after that other workers send them again, and a late result
        is still logged as the attempt it was).
        """
        claims = [item.claim for item in batch]
        results = [item.result for item in batch]
        # Past this the leases ran out for sure (they are not renewed while the database is
        # unreachable): other workers send the deliveries again.
        lease_end = min(claim.started_at.timestamp() for claim in claims) + (
            settings.WEBHOOKS_TIMEOUT_SECONDS + settings.WEBHOOKS_LEASE_SECONDS
        )
        pause = 0.2
        progress = RecordProgress()  # what is written is not written again by a retry
        while True:
            try:
                circuits = CircuitChanges()
                deliveries_record(
                    claims=claims,
                    results=results,
                    pull_waiting=False,
                    circuits=circuits,
                    progress=progress,
                    hand_over=not self._closing.is_set(),
                )
                receivers_gone_disable(claims, results)
                return self._continue(claims, circuits, progress.waiting, progress.handed)
            except (OperationalError, InterfaceError) as exc:
                connection.close_if_unusable_or_obsolete()
                waited_out = db_now(measure=False).timestamp() + pause > lease_end + 60
                if waited_out:
                    logger.error(
                        "The database was unreachable for longer than the leases of %d "
                        "attempts (%s); they were made, could not be recorded, and will be "
                        "sent again",
                        len(batch),
                        exc,
                    )
                    return 0
                logger.warning(
                    "Recording %d attempts failed, the database is unreachable (%s); "
                    "trying again in %.1f s",
                    len(batch),
                    exc,
                    pause,
                )
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            except Exception:
                logger.exception("Recording %d attempts failed", len(batch))
                return 0

    def _continue(
        self,
        claims: list[Claim],
        circuits: CircuitChanges,
        waiting: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
        handed: list[Claim] | None = None,
    ) -> int:
        """Claim, for the webhooks these attempts went to, deliveries that waited for their
        slots, and send them with the slots just freed (and more after a circuit closed or a
        catch-up); return how many of the freed slots went on. The slots of attempts claimed
        with deliveries waiting behind them pass on, and those of any attempt of a webhook
        whose deliveries wait though none did when it was claimed (``waiting``, from the
        record): nobody else takes those up. A webhook whose circuit is open
        (``circuits.opened``) is left alone: its waiting deliveries wait for its probe. Nothing
        is taken up once the process is shutting down (``close``).

        ``handed``: the deliveries the record leased in the slots of some of these attempts
        (``deliveries_record``'s ``hand_over``); they are sent first, and only the slots left
        are taken up."""
        handed = handed or []
        for claim in handed:
            self._submit_one(claim)  # the slots of the attempts they were handed pass on
        if self._closing.is_set():
            return len(handed)
        freed: dict[uuid.UUID, int] = {}
        for claim in claims:
            endpoint = claim.delivery.subscription_id
            if endpoint in circuits.opened:
                continue
            # An answer that closed the circuit: deliveries may have been left waiting behind
            # it since this attempt was claimed, even if nothing waited then.
            if claim.waiting_behind or endpoint in circuits.closed or endpoint in waiting:
                freed[endpoint] = freed.get(endpoint, 0) + 1
        for claim in handed:
            endpoint = claim.delivery.subscription_id
            if freed.get(endpoint, 0) > 0:
                freed[endpoint] -= 1
        freed = {endpoint: count for endpoint, count in freed.items() if count > 0}
        if not freed:
            return len(handed)  # nothing more waited, or nobody waits for the slots left
        passed = sum(freed.values())
        shares_widen(freed, claims, circuits.closed)
        # After a circuit closed or a catch-up, the deliveries that waited behind it may
        # take the webhook's other slots too, as far as this process has send slots free.
        extra = self._slots_take_now(sum(freed.values()) - passed)
        freed = _quotas_fit(freed, claims, passed + extra, closed=circuits.closed | waiting)
        try:
            outcome = deliveries_claim_waiting(freed=freed, failing=self._failing_room())
        except Exception:
            logger.exception("Taking up deliveries waiting for %d webhooks failed", len(freed))
            self._slots_give(extra)
            return len(handed)
        # The finished attempts' slots (and their count in flight) pass to these, then the
        # extra ones, which count as more in flight; what the take-up left of those goes back.
        self._failing_full_log(outcome)
        used = max(0, len(outcome.claims) - passed)
        self._slots_give(extra - used)
        with self._lock:
            self._in_flight += used
        for claim in outcome.claims:
            self._submit_one(claim)
        if outcome.retry_at is not None and outcome.woken:
            try:
                claims_followup(outcome.waiting, outcome)
            except Exception:
                # Only a message for when the rate allows more; without it they wait for the
                # attempts in flight or the sweeper. What was claimed is on its way regardless.
                logger.exception(
                    "Could not schedule %d rate-limited deliveries", len(outcome.woken)
                )
        return len(handed) + len(outcome.claims) - used

    def _slots_take_now(self, wanted: int) -> int:
        """Up to ``wanted`` free slots, without waiting for any."""
        taken = 0
        while taken < wanted and self._free.acquire(blocking=False):
            taken += 1
        return taken

    def _done(self, count: int) -> None:
        self._slots_give(count)
        with self._lock:
            self._in_flight -= count
            if self._in_flight <= 0:
                self._idle.notify_all()

    # --- Keeping the leases -----------------------------------------------------------------

    def _renew_forever(self) -> None:
        while not self._stopped.wait(settings.WEBHOOKS_LEASE_SECONDS / 3):
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                leases_renew(leases=held)
            except Exception:
                # The database may be restarting: the recorder's retries cover the results; the
                # leases run out and the deliveries are sent again (at least once, never lost).
                logger.warning("Could not renew the leases of %d deliveries in flight", len(held))
                connection.close_if_unusable_or_obsolete()
        connection.close()

    # --- Shutting down ----------------------------------------------------------------------

    def close(self) -> None:
        """Take up no more work: the attempts that finish from now on free their slots
        instead of sending the deliveries that wait behind them (a warm shutdown)."""
        self._closing.set()

    def stop(self, timeout: float) -> bool:
        """Drain (see ``drain``), then stop the recorder and the renewer and close their
        database connections; return whether everything in flight was recorded."""
        self.close()
        drained = self.drain(timeout)
        self._stopped.set()
        self._results.put(None)
        self._recorder.join(timeout)
        return drained

    def drain(self, timeout: float) -> bool:
        """Wait until every delivery sent off is recorded, up to ``timeout`` seconds; return
        whether all were."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._in_flight > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


@dataclass
class InsertedClaim:
    """A claim made in the transaction that inserted its deliveries (``dispatch_inserted``):
    once that commits, ``send`` sends what it leased; if it does not, ``abandon`` gives its
    send slots back."""

    dispatcher: Dispatcher
    outcome: ClaimOutcome
    slots: int
    ids: list[str]

    def send(self) -> None:
        """After the commit: send what was leased; what the slots did not cover is dispatched
        as the hand-off dispatches (waiting for slots to free)."""
        outcome, dispatcher = self.outcome, self.dispatcher
        dispatcher._slots_give(self.slots - len(outcome.claims))
        dispatcher._submit(outcome.claims)
        try:
            claims_followup(self.ids, outcome)
            if outcome.unclaimed:
                dispatcher.dispatch(outcome.unclaimed, waiting=True)
        except Exception:
            # As a hand-off after a commit: what was committed stays so, and what this left
            # waiting is the sweeper's. What was claimed is on its way regardless.
            logger.exception(
                "Could not hand off %d deliveries after their fan-out; the sweeper sends them",
                len(self.ids) - len(outcome.claims),
            )

    def abandon(self) -> None:
        """The transaction did not commit: nothing was leased."""
        self.dispatcher._slots_give(self.slots)

    def committed_after_loss(self) -> bool:
        """Whether the transaction committed, when its commit's answer was lost with the
        connection (``claim_committed_after_loss``)."""
        return claim_committed_after_loss(self.outcome)


def _unexpected(exc: BaseException) -> TransportResult:
    """The result of an attempt an unexpected error stopped (a defect: every expected failure
    is a result of its own): recorded and retried on the schedule like any failure, rather
    than left to its lease, which would log it as interrupted, as if its worker had died."""
    return TransportResult(
        request_headers={},
        error_kind=ErrorKind.INTERNAL,
        error_message=f"Unexpected error: {type(exc).__name__}: {exc}",
    )


def _quotas_fit(
    freed: dict[uuid.UUID, int],
    claims: list[Claim],
    slots: int,
    closed: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
) -> dict[uuid.UUID, int]:
    """``freed`` cut down to ``slots`` in all: each webhook keeps the slots its own finished
    attempts pass on, and what is left goes to the others' extra shares in turn."""
    if sum(freed.values()) <= slots:
        return freed
    own: dict[uuid.UUID, int] = {}
    for claim in claims:
        endpoint = claim.delivery.subscription_id
        if (claim.waiting_behind or endpoint in closed) and endpoint in freed:
            own[endpoint] = own.get(endpoint, 0) + 1
    fitted = dict(own)
    left = slots - sum(own.values())
    for endpoint, share in freed.items():
        more = min(share - own[endpoint], max(0, left))
        fitted[endpoint] += more
        left -= more
    return fitted


_dispatchers: dict[int, Dispatcher] = {}
_dispatchers_lock = threading.Lock()


def dispatcher() -> Dispatcher:
    """This process's dispatcher, started on first use (a forked worker child starts its own)."""
    pid = os.getpid()
    found = _dispatchers.get(pid)
    if found is None:
        with _dispatchers_lock:
            found = _dispatchers.get(pid)
            if found is None:
                _dispatchers.clear()
                open_files_fit(settings.WEBHOOKS_SEND_THREADS)
                found = _dispatchers[pid] = Dispatcher(settings.WEBHOOKS_SEND_THREADS)
    return found


def deliveries_dispatch(*, delivery_ids: Iterable[uuid.UUID | str], waiting: bool = False) -> int:
    """Claim the deliveries among ``delivery_ids`` that may go now and send them from this
    process's sending engine; return how many went out. Returns before they are answered: the
    results are recorded as they arrive. Idempotent, as ``deliveries_attempt``. ``waiting``:
    they wait without a message already (``deliveries_claim``)."""
    return dispatcher().dispatch(
        [str(delivery_id) for delivery_id in delivery_ids], waiting=waiting
    )


def deliveries_dispatch_inserted(
    *,
    deliveries: list[Delivery],
    rest: list[Delivery] | None = None,
    along: WriteAlong | None = None,
) -> InsertedClaim | None:
    """Claim, in the caller's transaction that has just inserted ``deliveries`` (the
    fan-out's), those that may go now, to be sent from this process's sending engine once it
    commits: ``InsertedClaim.send`` after the commit, ``abandon`` if it rolls back. None: no
    send slot is free now; dispatch them after the commit (``deliveries_dispatch``). ``rest``:
    the fan-out's other deliveries, those of them that would only wait listed in the outcome's
    ``rest_waiting``, and ``along`` sent with the claim's lock (``deliveries_claim_inserted``)."""
    return dispatcher().dispatch_inserted(deliveries, rest, along)


def dispatcher_drain(*, timeout: float) -> bool:
    """Let this process's deliveries in flight finish and be recorded (a warm shutdown),
    taking up nothing new meanwhile."""
    found = _dispatchers.get(os.getpid())
    if found is None:
        return True
    found.close()
    return found.drain(timeout)
