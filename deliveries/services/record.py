"""Recording attempts: every result of a batch in one transaction (the delivery's next state, the
attempt log, the webhook's failure streak and circuit breaker), and what follows from it: the
next retries' messages, the deliveries that waited for a slot of their webhook, and what a
receiver's answer triggers (410)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.utils import timezone

from common.clock import db_now
from common.sql import rows_update_each
from common.transactions import after_commit, transaction_committed
from subscriptions.models import Subscription
from subscriptions.services import subscription_disable
from webhook_engine.errors import NETWORK_FAILURES, ErrorKind
from webhook_engine.retry import is_retryable, retry_after_seconds
from webhook_engine.transport import TransportResult

from ..metrics import attempts_observe
from ..models import (
    AttemptTrigger,
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
)
from ..redaction import attempt_redact
from .claim import (
    HANDED_SQL,
    Claim,
    Handover,
    claims_handed,
    endpoints_lock,
    handed_read,
    handover_prepare,
    lost_token,
    waiting_due,
)
from .config import retry_policy
from .fan_out import deliveries_enqueue
from .redrive import probe_deliveries, retrigger_schedule_resume

logger = logging.getLogger(__name__)


_RECORDED_FIELDS = [
    "status",
    "next_attempt_at",
    "next_trigger",
    "enqueued_at",
    "leased_until",
    "lease_token",
    "last_response_status",
    "last_error_kind",
    "last_error",
    "delivered_at",
]


def _next_attempt_at(
    *, claim: Claim, result: TransportResult, now: dt.datetime
) -> dt.datetime | None:
    if claim.trigger != AttemptTrigger.AUTOMATIC:
        return None
    if not is_retryable(error_kind=result.error_kind, status=result.status):
        return None
    policy = retry_policy()
    # The window starts at creation, or later for a delivery held by a pause (pausing.py).
    created_at = claim.delivery.retry_window_start_at or claim.delivery.created_at
    next_at = policy.next_attempt_at(created_at=created_at, attempts_made=claim.number, now=now)
    if next_at is None or result.status not in (429, 503):
        return next_at
    wait = retry_after_seconds(_header(result.headers, "Retry-After"), now=now)
    if wait is None:
        return next_at
    latest = policy.deadline(created_at)
    return min(max(next_at, now + dt.timedelta(seconds=min(wait, policy.window_seconds))), latest)


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


def deliveries_record(
    *,
    claims: list[Claim],
    results: list[TransportResult],
    pull_waiting: bool = True,
    circuits: CircuitChanges | None = None,
    progress: RecordProgress | None = None,
    hand_over: bool = False,
) -> list[DeliveryAttempt]:
    """Write each claim's result and return the attempts, in the order of ``claims``.

    One transaction for the batch: the delivery's next state (delivered, the next automatic
    attempt, or failed), its attempt row, and its webhook's failure streak. A delivery whose
    lease ran out meanwhile keeps its new owner's state; only its attempt row is written. If
    the batch cannot be written as a whole, each result is written on its own.

    ``pull_waiting`` enqueues, for each webhook, as many of the deliveries that waited for its
    slots as finished here; a caller that takes them up itself (the dispatcher) passes False,
    and ``circuits``, which gets the webhooks whose circuit is open after this batch (their
    waiting deliveries wait for the probe) and those an answer closed.

    A caller that tries again after the connection was lost (the dispatcher) passes the same
    ``progress`` each time: the steps that were written are not written again (the results
    would read as attempts whose lease ran out, and the failures would count twice).

    A caller that takes up the waiting deliveries itself also learns, in
    ``progress.waiting``, the webhooks of attempts claimed with nothing waiting behind them
    (``Claim.waiting_behind``) whose deliveries wait now (read with the results written; on
    PostgreSQL by the same statement): claims made after them left deliveries waiting for the
    attempts they made, not for these, so these attempts' slots would stay free while those
    wait, unless its take-up fills them too.

    ``hand_over`` (the dispatcher, on PostgreSQL): the statement that writes the results also
    hands the slots of answered attempts to the oldest deliveries waiting behind them, leased
    in the same statement (``claim.HANDED_SQL``); their claims are in ``progress.handed``, to
    be sent by the caller. What it could not hand over is the caller's to take up as before.
    """
    progress = progress or RecordProgress()
    now = db_now()
    attempts: list[DeliveryAttempt] = []
    soon: list[tuple[uuid.UUID, float]] = []
    for claim, result in zip(claims, results, strict=True):
        delivery = claim.delivery
        attempts.append(_attempt_build(claim=claim, result=result))
        delivery.leased_until = None
        delivery.lease_token = None
        delivery.next_trigger = AttemptTrigger.AUTOMATIC
        delivery.last_response_status = result.status
        delivery.last_error_kind = result.error_kind
        delivery.last_error = attempts[-1].error_message  # redacted, as the attempt keeps it
        if result.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            delivery.enqueued_at = None
            continue
        next_at = _next_attempt_at(claim=claim, result=result, now=now)
        # Retrigger ("send now", owned by redrive.py): a failed manual attempt of a delivery
        # that was waiting for an automatic attempt goes back to that schedule.
        next_at = next_at or retrigger_schedule_resume(claim=claim, result=result, now=now)
        if next_at is None:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delivery.enqueued_at = None
            continue
        wait = (next_at - now).total_seconds()
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = next_at
        if wait <= settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS:
            delivery.enqueued_at = next_at
            soon.append((delivery.pk, wait))
        else:
            delivery.enqueued_at = None  # the sweeper sends it when it is due

    # Webhooks that answered and looked closed and clean at claim time: the statement that
    # writes the results also reads whether their circuit moved since (``_circuits_update``).
    outcomes = _circuit_outcomes(claims, results)
    if progress.written is None:
        dirty: set[uuid.UUID] | None = None
        # A write whose answer was lost with the connection may have committed: what it wrote
        # is not written again (the leases it cleared would make it read as late).
        found = _results_found(claims, attempts) if progress.write_tried else set()
        todo = [i for i in range(len(claims)) if i not in found]
        owned = {claims[i].delivery.pk for i in found}
        progress.write_tried = True
        handover = None
        if hand_over and len(todo) == len(claims) and connection.vendor == "postgresql":
            handover = handover_prepare(claims, results, now)
            progress.handover_token = None if handover is None else handover.token
        try:
            if len(todo) == len(claims):
                owned, dirty = _results_write(
                    claims,
                    attempts,
                    now,
                    outcomes.clean,
                    found=None if pull_waiting else progress.waiting,
                    handover=handover,
                )
            elif todo:
                owned |= _results_write(
                    [claims[i] for i in todo], [attempts[i] for i in todo], now
                )[0]
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable, not refusing a row: the caller retries
        except DatabaseError:
            # One row the database refuses must not lose the others' results (their leases
            # would run out and they would be sent again): write them one by one.
            logger.exception(
                "Recording %d attempts at once failed; recording one by one", len(todo)
            )
            for i in todo:
                alone = _result_write_alone(claims[i], attempts[i], now)
                if alone is None:
                    progress.refused.add(claims[i].delivery.pk)
                else:
                    owned |= alone
        if handover is not None and handover.rows is not None:
            progress.handed = claims_handed(handover.rows, now, handover.token)
        elif progress.handover_token is not None and found:
            # The write that handed slots over committed, its answer lost with the connection
            # (or the claims could not be made of what it returned): what it leased is read
            # back by its token and sent.
            token = progress.handover_token
            progress.handed = claims_handed(handed_read(token, now), now, token)
        progress.written = (owned, dirty)
        for countdown, delivery_ids in _by_countdown(soon, owned).items():
            after_commit(deliveries_enqueue, delivery_ids, countdown=countdown)
    owned, dirty = progress.written
    if progress.changes is None and progress.circuits_tried is not None:
        # The connection was lost at the commit of the circuits' update: if it committed, its
        # counts are not added a second time.
        txid, tried = progress.circuits_tried
        if transaction_committed(txid):
            progress.changes = tried
        progress.circuits_tried = None
    if progress.changes is None:
        progress.changes = _circuits_update(
            claims, results, dirty=dirty, outcomes=outcomes, progress=progress
        )
    changes = progress.changes
    if not progress.probes_scheduled:
        _probes_schedule(changes.probes, now)
        progress.probes_scheduled = True
    if circuits is not None:
        circuits.opened |= changes.opened
        circuits.closed |= changes.closed
    if pull_waiting:
        _waiting_pull(claims, owned, changes, now)
    lost = [a for a, claim in zip(attempts, claims, strict=True) if claim.delivery.pk not in owned]
    if lost and not progress.late_written:
        _late_attempts_record(lost, refused=progress.refused)
        progress.late_written = True
    if not progress.observed:
        # Metrics and the per-attempt log lines: the one place they are taken
        # (deliveries/metrics.py).
        attempts_observe(attempts)
        progress.observed = True
    return attempts


@dataclass
class RecordProgress:
    """What ``deliveries_record`` has written of one batch, across the caller's tries."""

    # The deliveries whose lease was still ours, and the webhooks whose circuit moved since
    # their claim (None: not read).
    written: tuple[set[uuid.UUID], set[uuid.UUID] | None] | None = None
    write_tried: bool = False  # a try began writing the results (it may have committed)
    # The deliveries whose new state the database refused, written one by one: they keep
    # their lease until it runs out.
    refused: set[uuid.UUID] = field(default_factory=set)
    changes: CircuitChanges | None = None  # the circuits' counts were updated
    # The transaction that updates them and what it changes, until it is known to have
    # committed (PostgreSQL: its commit's answer may be lost with the connection).
    circuits_tried: tuple[int, CircuitChanges] | None = None
    probes_scheduled: bool = False
    late_written: bool = False
    observed: bool = False
    # Webhooks of attempts claimed with nothing waiting behind them whose deliveries wait now
    # (read with the results written, for a caller that takes them up itself).
    waiting: set[uuid.UUID] = field(default_factory=set)
    # The token of the leases the write handed over (``hand_over``), and their claims once
    # known: the caller sends them.
    handover_token: uuid.UUID | None = None
    handed: list[Claim] = field(default_factory=list)


def _results_found(claims: list[Claim], attempts: list[DeliveryAttempt]) -> set[int]:
    """The positions of the claims whose result is written already, each of their attempts'
    id set from its row.

    Only this worker writes an attempt with its claim's number; the one other row that can
    have it is the "interrupted" entry a new owner writes once the lease ran out.
    """
    rows = (
        DeliveryAttempt.objects.filter(delivery_id__in={claim.delivery.pk for claim in claims})
        .exclude(error_kind=ErrorKind.INTERRUPTED)
        .values_list("delivery_id", "number", "pk")
    )
    written = {(delivery, number): pk for delivery, number, pk in rows}
    found: set[int] = set()
    for index, (claim, attempt) in enumerate(zip(claims, attempts, strict=True)):
        pk = written.get((claim.delivery.pk, claim.number))
        if pk is not None:
            attempt.pk = pk
            found.add(index)
    return found


def _late_attempts_record(lost: list[DeliveryAttempt], *, refused: set[uuid.UUID]) -> None:
    """Attempts whose delivery this worker no longer held when it recorded them: the lease ran
    out mid-attempt (other workers may own the rows now) or the delivery was deleted with its
    webhook. The real results replace the "interrupted" entries the new owners may have
    written; a deleted delivery's are dropped.

    Also those of ``refused``, whose delivery the database would not take the new state of
    (``_result_write_alone``): the delivery keeps its lease, and it is sent again once that
    runs out; the attempt is logged all the same, and the log says which it was."""
    existing = set(
        Delivery.objects.filter(pk__in=[a.delivery_id for a in lost]).values_list("pk", flat=True)
    )
    late = [attempt for attempt in lost if attempt.delivery_id in existing]
    if len(late) < len(lost):
        logger.info(_finished_after(len(lost) - len(late), "webhook was deleted"))
    if not late:
        return
    try:
        with transaction.atomic():
            DeliveryAttempt.objects.bulk_create(
                late,
                update_conflicts=True,
                unique_fields=["delivery", "number"],
                update_fields=_ATTEMPT_RESULT_FIELDS,
            )
    except IntegrityError:
        logger.info("Late attempts not recorded: their deliveries were deleted meanwhile")
        return
    # Once written: a caller that tries again after a lost connection does not say it twice.
    outlived = [attempt for attempt in late if attempt.delivery_id not in refused]
    if outlived:
        logger.warning(_finished_after(len(outlived), "lease ran out"))
    for attempt in late:
        if attempt.delivery_id in refused:
            logger.warning(
                "The database refused the result of attempt %s of delivery %s; it is sent "
                "again once its lease runs out",
                attempt.number,
                attempt.delivery_id,
            )


def _finished_after(count: int, what: str) -> str:
    if count == 1:
        return f"1 attempt finished after its {what}"
    return f"{count} attempts finished after their {what}"


_ATTEMPT_RESULT_FIELDS = [
    "duration_ms",
    "request_headers",
    "response_status",
    "response_headers",
    "response_body",
    "response_body_truncated",
    "error_kind",
    "error_message",
]


def _results_write(
    claims: list[Claim],
    attempts: list[DeliveryAttempt],
    now: dt.datetime,
    clean: list[uuid.UUID] | None = None,
    *,
    found: set[uuid.UUID] | None = None,
    handover: Handover | None = None,
) -> tuple[set[uuid.UUID], set[uuid.UUID] | None]:
    """Write the batch atomically; return the deliveries whose lease was still ours, and which
    of the webhooks in ``clean`` have a circuit that is not closed and clean (None: not read).
    ``found``: gets the webhooks of the claims made with nothing waiting behind them whose due
    deliveries wait now (``deliveries_record``); ``handover``: slots to hand over in the same
    statement (PostgreSQL only), its leased rows put in ``handover.rows``.

    On PostgreSQL one statement writes the deliveries' new state (where this worker's lease
    still holds), their attempt rows and their webhooks' failure streaks; elsewhere (the
    embedded SQLite) the rows are locked, read, bulk-updated and the attempts inserted in a
    transaction, then the streaks updated.
    """
    unmarked = (
        sorted({claim.delivery.subscription_id for claim in claims if not claim.waiting_behind})
        if found is not None
        else []
    )
    if connection.vendor == "postgresql":
        owned, dirty, waiting = _results_write_statement(
            claims, attempts, now, clean or [], unmarked, handover
        )
        if found is not None:
            found |= waiting
        return owned, dirty
    if unmarked and found is not None:
        found |= set(
            waiting_due(now)
            .filter(subscription_id__in=unmarked)
            .order_by()
            .values_list("subscription_id", flat=True)
            .distinct()
        )
    with transaction.atomic():
        owned = set(
            Delivery.objects.select_for_update()
            .filter(pk__in=[claim.delivery.pk for claim in claims])
            .filter(lease_token__in={claim.token for claim in claims})
            .values_list("pk", flat=True)
        )
        if owned:
            Delivery.objects.bulk_update(
                [claim.delivery for claim in claims if claim.delivery.pk in owned],
                _RECORDED_FIELDS,
            )
            DeliveryAttempt.objects.bulk_create(
                [a for a, c in zip(attempts, claims, strict=True) if c.delivery.pk in owned]
            )
    if owned:
        _failure_streaks_update(claims, [_outcome(a) for a in attempts], owned, now)
    return owned, None


def _results_write_statement(
    claims: list[Claim],
    attempts: list[DeliveryAttempt],
    now: dt.datetime,
    clean: list[uuid.UUID],
    unmarked: list[uuid.UUID],
    handover: Handover | None = None,
) -> tuple[set[uuid.UUID], set[uuid.UUID] | None, set[uuid.UUID]]:
    """``UPDATE ... FROM (VALUES ...) RETURNING`` the owned deliveries, ``INSERT`` their
    attempts from it, and end or start their webhooks' failure streaks as
    ``_failure_streaks_update`` does, in one statement (atomic on its own, one round trip).
    A webhook whose streak does not change is not written (the usual path: no row locked).
    The webhooks are looked up as arrays (``= ANY(ARRAY(...))``), which PostgreSQL reads
    through the primary key; ``IN (SELECT ...)`` read the whole webhooks table every batch.
    Returns what ``_results_write`` does, and which of the webhooks in ``unmarked`` have
    deliveries waiting (``_WAITING_FOUND``, as the statement began).

    The statement is written with PostgreSQL's own placeholders (``$1``) and sent through a
    raw cursor: a batch's statement is new text of up to tens of kilobytes, and converting
    ``%s`` placeholders cost more than the rest of recording a large batch.
    """
    delivery_rows: list[str] = []
    attempt_rows: list[str] = []
    params: list[Any] = []
    for claim, attempt in zip(claims, attempts, strict=True):
        delivery = claim.delivery
        delivery_rows.append(_row(_DELIVERY_ROW, len(params)))
        params += [
            delivery.pk,
            claim.token,
            delivery.status,
            delivery.next_attempt_at,
            delivery.enqueued_at,
            delivery.last_response_status,
            delivery.last_error_kind,
            delivery.last_error,
            delivery.delivered_at,
            _outcome(attempt),
        ]
    for attempt in attempts:
        attempt_rows.append(_row(_ATTEMPT_ROW, len(params)))
        params += [
            attempt.delivery_id,
            attempt.number,
            attempt.trigger,
            attempt.started_at,
            attempt.duration_ms,
            attempt.request_url,
            json.dumps(attempt.request_headers),
            attempt.response_status,
            json.dumps(attempt.response_headers),
            attempt.response_body,
            attempt.response_body_truncated,
            attempt.error_kind,
            attempt.error_message,
        ]
    params += [now, clean]
    now_at, clean_at = len(params) - 1, len(params)
    waiting = "'{}'::uuid[]"  # none to look for: nothing more to plan either
    if unmarked:
        params.append(unmarked)
        waiting = _WAITING_FOUND.format(now=now_at, unmarked=len(params))
    template, handed = _RESULTS_WRITE, ""
    if handover is not None:
        params += [
            handover.ids,
            handover.lease_until,
            handover.token,
            lost_token(handover.token),
            handover.concurrency,
        ]
        handed = HANDED_SQL.format(
            owned="owned",
            now=now_at,
            ids=len(params) - 4,
            lease=len(params) - 3,
            token=len(params) - 2,
            lost=len(params) - 1,
            concurrency=len(params),
        )
        template = _RESULTS_WRITE_HANDING
    sql = template.format(
        deliveries=", ".join(delivery_rows),
        attempts=", ".join(attempt_rows),
        now=now_at,
        clean=clean_at,
        waiting=waiting,
        handed=handed,
    )
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.RawCursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if handover is not None:
        # The handed rows come after the attempts' (``_RESULTS_WRITE_HANDING``): no attempt id.
        handover.rows = [row[4:] for row in rows if row[1] is None]
        rows = [row[:4] for row in rows if row[1] is not None]
    written = {delivery_id: attempt_id for delivery_id, attempt_id, _dirty, _waiting in rows}
    for attempt in attempts:
        if attempt.delivery_id in written:
            attempt.pk = written[attempt.delivery_id]
    if not rows:
        return set(), None, set()
    return set(written), set(rows[0][2]), set(rows[0][3])


def _numbered(row: str) -> tuple[str, int]:
    """A ``VALUES`` row of ``%s`` placeholders as a format string of ``$n`` ones, and how many."""
    return row.replace("%s", "${}"), row.count("%s")


_DELIVERY_ROW = _numbered(
    "(%s::uuid, %s::uuid, %s::varchar, %s::timestamptz, %s::timestamptz, %s::integer, "
    "%s::varchar, %s::text, %s::timestamptz, %s::boolean)"
)
_ATTEMPT_ROW = _numbered(
    "(%s::uuid, %s::integer, %s::varchar, %s::timestamptz, %s::integer, %s::varchar, "
    "%s::jsonb, %s::integer, %s::jsonb, %s::text, %s::boolean, %s::varchar, %s::text)"
)


def _row(row: tuple[str, int], first: int) -> str:
    """The row with its placeholders numbered after the ``first`` parameters."""
    template, count = row
    return template.format(*range(first + 1, first + 1 + count))


_RESULTS_WRITE = """
WITH owned AS (
    UPDATE deliveries_delivery AS d
    SET status = v.status, next_attempt_at = v.next_attempt_at, next_trigger = 'automatic',
        enqueued_at = v.enqueued_at, leased_until = NULL, lease_token = NULL,
        last_response_status = v.last_response_status, last_error_kind = v.last_error_kind,
        last_error = v.last_error, delivered_at = v.delivered_at
    FROM (VALUES {deliveries}) AS v(id, token, status, next_attempt_at, enqueued_at,
                                    last_response_status, last_error_kind, last_error,
                                    delivered_at, succeeded)
    WHERE d.id = v.id AND d.lease_token = v.token
    RETURNING d.id, d.subscription_id, v.succeeded
),
streaks_ended AS (
    UPDATE subscriptions_subscription AS s SET failing_since = NULL
    WHERE s.id = ANY(ARRAY(SELECT subscription_id FROM owned WHERE succeeded))
      AND s.failing_since IS NOT NULL
    RETURNING 1
),
streaks_started AS (
    UPDATE subscriptions_subscription AS s SET failing_since = ${now}
    WHERE s.id = ANY(ARRAY(SELECT subscription_id FROM owned WHERE NOT succeeded))
      AND s.id <> ALL(ARRAY(SELECT subscription_id FROM owned WHERE succeeded))
      AND s.failing_since IS NULL
    RETURNING 1
)
INSERT INTO deliveries_deliveryattempt
    (delivery_id, number, trigger, started_at, duration_ms, request_url, request_headers,
     response_status, response_headers, response_body, response_body_truncated, error_kind,
     error_message)
SELECT a.* FROM (VALUES {attempts}) AS a(delivery_id, number, trigger, started_at, duration_ms,
                                         request_url, request_headers, response_status,
                                         response_headers, response_body,
                                         response_body_truncated, error_kind, error_message)
JOIN owned ON owned.id = a.delivery_id
RETURNING delivery_id, id, ARRAY(
    SELECT e.subscription_id FROM deliveries_endpointstate AS e
    WHERE e.subscription_id = ANY(${clean}::uuid[])
      AND (e.circuit_state <> 'closed' OR e.consecutive_failures > 0)
), {waiting}
"""
# The same, handing slots over too (``claim.HANDED_SQL``): the attempts are written by a part of
# the statement, and the rows it returns are the attempts' (delivery, attempt id and the reads)
# followed by the handed deliveries' (no attempt id; their columns after the first four). The
# handover comes last: the parts that may wait for another transaction's row locks (the
# deliveries' update, and the failure streaks', which would otherwise run after everything
# else: the final SELECT reads their RETURNING rows to make them run first) are done before it
# reads the clock to tell whether the attempts' leases still hold.
_WRITE_HEAD, _WRITE_INSERT = _RESULTS_WRITE.split("INSERT INTO", 1)
_WRITE_INSERT, _WRITE_READS = _WRITE_INSERT.split("RETURNING delivery_id, id,", 1)
_RESULTS_WRITE_HANDING = (
    _WRITE_HEAD.rstrip()  # noqa: S608 - no values, only the statement's own parts
    + ",\nwritten AS (INSERT INTO"
    + _WRITE_INSERT
    + "RETURNING delivery_id, id),\nhanded AS ({handed})\n"
    + "SELECT delivery_id, id,"
    + _WRITE_READS.rstrip()
    + ", "
    + ", ".join(["NULL"] * 24)
    + " FROM written\nWHERE (SELECT count(*) FROM streaks_ended) + "
    + "(SELECT count(*) FROM streaks_started) >= 0\n"
    + "UNION ALL SELECT h.id, NULL, NULL, NULL, h.* FROM handed AS h\n"
)
# Which of the webhooks of attempts nobody waited behind have deliveries waiting: one probe of
# each webhook's waiting deliveries, in the order of ``delivery_waiting_in_order_idx``, which
# the ORDER BY names so that the planner takes it (a semi-join may hash every waiting delivery
# of every webhook, and a probe without the order may read a whole index of due deliveries,
# at every record).
_WAITING_FOUND = """ARRAY(
    SELECT u.id FROM unnest(${unmarked}::uuid[]) AS u(id) CROSS JOIN LATERAL (
        SELECT 1 FROM deliveries_delivery AS w
        WHERE w.subscription_id = u.id AND w.status = 'pending' AND w.enqueued_at IS NULL
          AND w.next_attempt_at <= ${now} AND (w.leased_until IS NULL OR w.leased_until < ${now})
          AND NOT w.is_test
        ORDER BY w.next_attempt_at, w.id LIMIT 1
    ) AS found
)"""


def _result_write_alone(
    claim: Claim, attempt: DeliveryAttempt, now: dt.datetime
) -> set[uuid.UUID] | None:
    """One delivery's result; if the database refuses it, a bare record that says so. Returns
    the delivery's id if its lease was still ours, else an empty set; None if the database
    refused the bare record too (the delivery is left leased: its lease runs out)."""
    for bare in (False, True):
        if bare:
            attempt.response_headers = {}
            attempt.response_body = ""
            attempt.request_headers = {}
            attempt.error_message = "The attempt's answer could not be stored."
            claim.delivery.last_error = attempt.error_message
        try:
            owned, _dirty = _results_write([claim], [attempt], now)
            return owned
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError:
            logger.exception("Recording attempt %s of %s failed", claim.number, claim.delivery.pk)
    return None


def _outcome(attempt: DeliveryAttempt) -> bool | None:
    """True for a success, False for a failure that counts, None for one that does not."""
    if attempt.trigger == AttemptTrigger.TEST or attempt.error_kind == ErrorKind.DISABLED:
        return None
    return attempt.error_kind == ErrorKind.NONE


def _failure_streaks_update(
    claims: list[Claim], outcomes: list[bool | None], owned: set[uuid.UUID], now: dt.datetime
) -> None:
    """A success ends a webhook's failure streak; a failure starts one if none is running."""
    succeeded: set[uuid.UUID] = set()
    failed: set[uuid.UUID] = set()
    for claim, outcome in zip(claims, outcomes, strict=True):
        if claim.delivery.pk not in owned or outcome is None:
            continue
        (succeeded if outcome else failed).add(claim.delivery.subscription_id)
    if succeeded:
        Subscription.objects.filter(pk__in=succeeded, failing_since__isnull=False).update(
            failing_since=None
        )
    failed -= succeeded
    if failed:
        Subscription.objects.filter(pk__in=failed, failing_since__isnull=True).update(
            failing_since=now
        )


def receivers_gone_disable(claims: list[Claim], results: list[TransportResult]) -> None:
    """A receiver that answers 410 Gone asked to stop: its webhook is disabled (not on a test),
    unless it changed since the attempt was made with it (a new URL: the old receiver's answer
    says nothing of the new one; any other change: the next 410 disables it)."""
    for claim, result in zip(claims, results, strict=True):
        if result.status == 410 and claim.trigger != AttemptTrigger.TEST:
            subscription = claim.delivery.subscription
            try:
                subscription_disable(
                    subscription=subscription,
                    reason=(
                        f"The receiver answered 410 Gone on {timezone.now():%Y-%m-%d %H:%M} UTC: "
                        "it no longer accepts these webhooks."
                    ),
                    settings_at=subscription.updated_at,
                )
            except Subscription.DoesNotExist:
                continue  # deleted while its attempt was in flight: nothing left to disable


def _attempt_build(*, claim: Claim, result: TransportResult) -> DeliveryAttempt:
    # The one place attempts are built: every known secret of the webhook is redacted from
    # what is stored (deliveries/redaction.py).
    kept = attempt_redact(subscription=claim.delivery.subscription, result=result)
    return DeliveryAttempt(
        delivery=claim.delivery,
        number=claim.number,
        trigger=claim.trigger,
        started_at=claim.started_at,
        duration_ms=result.duration_ms,
        request_url=kept.request_url,
        request_headers=storable(kept.request_headers),
        response_status=result.status,
        response_headers=storable(kept.response_headers),
        response_body=storable(kept.response_body),
        response_body_truncated=result.body_truncated,
        error_kind=result.error_kind,
        error_message=storable(kept.error_message),
    )


def storable(value: Any) -> Any:
    """A receiver's text as PostgreSQL can store it: NUL (which no text or JSON column accepts)
    becomes U+FFFD, in strings and in the keys and values of objects."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def _by_countdown(
    soon: list[tuple[uuid.UUID, float]], owned: set[uuid.UUID]
) -> dict[float, list[uuid.UUID]]:
    """Retries due within a tenth of a second of each other share a message (due at the latest
    of them), so a batch that failed together is retried with one message, not one each."""
    groups: dict[float, list[uuid.UUID]] = {}
    for delivery_id, wait in soon:
        if delivery_id in owned:
            groups.setdefault(math.ceil(wait * 10) / 10, []).append(delivery_id)
    return groups


@dataclass
class CircuitChanges:
    """What a batch of results did to its webhooks' circuit breakers."""

    # Open after the batch, disabled webhooks aside (nothing is sent to those: their waiting
    # deliveries are taken up, to be failed, whatever the circuit).
    opened: set[uuid.UUID] = field(default_factory=set)
    # Closed by an answer in the batch.
    closed: set[uuid.UUID] = field(default_factory=set)
    # Opened (again) by the batch, with the time of their probe: its message is sent once the
    # counts are written (``_probes_schedule``).
    probes: list[tuple[uuid.UUID, dt.datetime | None]] = field(default_factory=list)


@dataclass
class _CircuitOutcomes:
    answered: dict[uuid.UUID, bool]  # per webhook: whether any attempt got an answer
    trailing: dict[uuid.UUID, int]  # network failures after its last answer in the batch
    touched: list[uuid.UUID]  # whose state this batch changes, as the claims saw it
    # Answered, and closed without failures when claimed: other attempts may have failed
    # since, or opened its circuit, which this answer ends.
    clean: list[uuid.UUID]
    # Whose probe ended here with neither an answer nor a network failure (a blocked
    # destination, an unreadable secret, an unexpected error).
    probes_unanswered: set[uuid.UUID] = field(default_factory=set)


def _circuit_outcomes(claims: list[Claim], results: list[TransportResult]) -> _CircuitOutcomes:
    answered: dict[uuid.UUID, bool] = {}
    trailing: dict[uuid.UUID, int] = {}
    known: dict[uuid.UUID, tuple[str, int]] = {}
    probes_unanswered: set[uuid.UUID] = set()
    for claim, result in zip(claims, results, strict=True):
        endpoint = claim.delivery.subscription_id
        known.setdefault(endpoint, (claim.circuit, claim.failures))
        if result.status is not None or result.ok:
            answered[endpoint] = True
            trailing[endpoint] = 0
        elif result.error_kind in NETWORK_FAILURES:
            answered.setdefault(endpoint, False)
            trailing[endpoint] = trailing.get(endpoint, 0) + 1
        elif claim.probe:
            probes_unanswered.add(endpoint)
    touched = [
        endpoint
        for endpoint, (circuit, failures) in known.items()
        if trailing.get(endpoint) or circuit != CircuitState.CLOSED or failures
    ]
    clean = [endpoint for endpoint in answered if answered[endpoint] and endpoint not in touched]
    return _CircuitOutcomes(
        answered=answered,
        trailing=trailing,
        touched=touched,
        clean=clean,
        probes_unanswered=probes_unanswered,
    )


def _circuits_update(
    claims: list[Claim],
    results: list[TransportResult],
    *,
    dirty: set[uuid.UUID] | None = None,
    outcomes: _CircuitOutcomes | None = None,
    progress: RecordProgress | None = None,
) -> CircuitChanges:
    """Count each webhook's network failures in a row and open or close its circuit; return
    what changed (``CircuitChanges``). ``dirty``: those of the webhooks that answered and
    looked clean at claim time whose circuit is not closed and clean now, if already read;
    ``outcomes``: what ``_circuit_outcomes`` makes of the batch, if already made.

    Any answer from the receiver (whatever its status) proves it reachable and closes the
    circuit; timeouts and connection, DNS, TLS and response failures count towards opening
    it. A probe that ends with neither (a blocked destination, a secret no key reads, an
    unexpected error) counts no failure but is over all the same: the circuit opens again for the
    next cooldown, as after a failed probe, rather than staying half-open (another probe
    every lease). Nothing is written while a webhook stays closed without failures (the
    usual path).

    An attempt made with settings the webhook no longer has (its ``updated_at`` moved since:
    above all a new URL, whose breaker started afresh) counts for nothing: its receiver may
    not be the webhook's any more. Such a probe is over, and the next is due at once.
    """
    outcomes = outcomes or _circuit_outcomes(claims, results)
    answered, trailing, touched = outcomes.answered, outcomes.trailing, list(outcomes.touched)
    if outcomes.clean:
        if dirty is None:
            dirty = set(
                EndpointState.objects.filter(pk__in=outcomes.clean)
                .exclude(circuit_state=CircuitState.CLOSED, consecutive_failures=0)
                .values_list("pk", flat=True)
            )
        touched += [endpoint for endpoint in outcomes.clean if endpoint in dirty]
    if not touched:
        return CircuitChanges()
    threshold = settings.WEBHOOKS_CIRCUIT_FAILURES
    opened: set[uuid.UUID] = set()
    closed: set[uuid.UUID] = set()
    probes: list[tuple[uuid.UUID, dt.datetime | None]] = []
    with transaction.atomic():
        # The webhooks' claim locks first: a claim reads the breaker and its rate budget under
        # them and writes them back (``claim._Plan.states_save``); without them it could write
        # back a circuit this opened or closed meanwhile.
        endpoints_lock(touched)
        # Not for a webhook deleted while its attempts were in flight: its state would violate
        # its foreign key at commit and fail the whole batch (the other webhooks' 410s too).
        existing = dict(Subscription.objects.filter(pk__in=touched).values_list("pk", "updated_at"))
        EndpointState.objects.bulk_create(
            [EndpointState(subscription_id=endpoint) for endpoint in existing],
            ignore_conflicts=True,
        )
        current = [
            index
            for index, claim in enumerate(claims)
            if existing.get(claim.delivery.subscription_id, claim.delivery.subscription.updated_at)
            == claim.delivery.subscription.updated_at
        ]
        # Probes of the webhook as it was: over, and the next is due (a new URL's at once).
        probes_gone: set[uuid.UUID] = set()
        if len(current) < len(claims):
            # Attempts to the webhook as it was (its old URL) say nothing of its receiver now.
            probes_gone = {claim.delivery.subscription_id for claim in claims if claim.probe}
            outcomes = _circuit_outcomes(
                [claims[index] for index in current], [results[index] for index in current]
            )
            answered, trailing = outcomes.answered, outcomes.trailing
            probes_gone -= {claims[index].delivery.subscription_id for index in current}
        states = list(EndpointState.objects.select_for_update().filter(pk__in=touched))
        # A circuit changes now, under the locks, not when the batch's results came in: a claim
        # that reads it after this time waits for the locks and sees the change, and a
        # cooldown counts from the moment the claims could see the circuit open.
        changed = db_now()
        for state in states:
            endpoint = state.subscription_id
            if answered.get(endpoint):
                state.consecutive_failures = trailing.get(endpoint, 0)
                if state.circuit_state != CircuitState.CLOSED:
                    logger.info("Circuit of webhook %s closed: the receiver answered", endpoint)
                    closed.add(endpoint)
                    state.circuit_state = CircuitState.CLOSED
                    state.circuit_changed_at = changed
                    state.opened_count = 0
                    state.probe_at = None
            else:
                state.consecutive_failures += trailing.get(endpoint, 0)
            if endpoint in probes_gone and state.circuit_state == CircuitState.HALF_OPEN:
                state.circuit_state = CircuitState.OPEN
                state.probe_at = changed
                probes.append((endpoint, changed))
            unanswered = not answered.get(endpoint, True)
            neutral = endpoint in outcomes.probes_unanswered and endpoint not in answered
            reopen = state.circuit_state == CircuitState.HALF_OPEN and (unanswered or neutral)
            trip = (
                state.circuit_state == CircuitState.CLOSED
                and state.consecutive_failures >= threshold
            )
            if reopen or trip:
                state.opened_count += 1
                cooldown = min(
                    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS * 2 ** (state.opened_count - 1),
                    settings.WEBHOOKS_CIRCUIT_COOLDOWN_MAX_SECONDS,
                )
                state.circuit_state = CircuitState.OPEN
                state.circuit_changed_at = changed if trip else state.circuit_changed_at or changed
                state.probe_at = changed + dt.timedelta(seconds=cooldown)
                if unanswered or trip:
                    logger.warning(
                        "Circuit of webhook %s open after %d network failures in a row; next "
                        "probe in %g s",
                        endpoint,
                        state.consecutive_failures,
                        cooldown,
                    )
                else:
                    logger.warning(
                        "Circuit of webhook %s open again: its probe ended without an answer "
                        "or a network failure; next probe in %g s",
                        endpoint,
                        cooldown,
                    )
            if state.circuit_state != CircuitState.CLOSED:
                opened.add(endpoint)
                if reopen or trip:
                    probes.append((endpoint, state.probe_at))
        rows_update_each(
            EndpointState,
            states,
            [
                "circuit_state",
                "circuit_changed_at",
                "consecutive_failures",
                "opened_count",
                "probe_at",
            ],
        )
        disabled = {
            claim.delivery.subscription_id
            for claim in claims
            if not claim.delivery.subscription.is_active
        }
        changes = CircuitChanges(opened=opened - disabled, closed=closed, probes=probes)
        if progress is not None and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT txid_current()")
                progress.circuits_tried = (cursor.fetchone()[0], changes)
    return changes


def circuit_restart(subscription_id: uuid.UUID) -> None:
    """Forget what a webhook's circuit breaker counted of its receiver: its URL changed or it
    was turned back on (``subscriptions``' fresh-start hook, after that commit). Its network
    failures and the openings that lengthen its cooldown start again from none; an open
    circuit is not closed (the receiver has not answered yet) but probes it now. Nothing is
    written for a webhook whose breaker counted nothing (the usual change).
    """
    now = db_now()
    with transaction.atomic():
        endpoints_lock([subscription_id])  # as every change of a breaker (``_circuits_update``)
        state = (
            EndpointState.objects.select_for_update()
            .filter(pk=subscription_id)
            .exclude(circuit_state=CircuitState.CLOSED, consecutive_failures=0, opened_count=0)
            .first()
        )
        if state is None:
            return
        state.consecutive_failures = 0
        state.opened_count = 0
        if state.circuit_state == CircuitState.OPEN:
            state.probe_at = now
            _probes_schedule([(subscription_id, now)], now)
        state.save(update_fields=["consecutive_failures", "opened_count", "probe_at"])
    logger.info(
        "Circuit of webhook %s starts afresh: its URL changed or it was turned on", subscription_id
    )


def _probes_schedule(probes: list[tuple[uuid.UUID, dt.datetime | None]], now: dt.datetime) -> None:
    """The oldest due delivery of each webhook whose circuit just opened gets a message for
    its probe's time (when near enough for a message; the sweeper probes the others): one
    read for them all, and a message per probe time."""
    near = {
        endpoint: max(0.0, (probe_at - now).total_seconds())
        for endpoint, probe_at in probes
        if probe_at is not None
        and (probe_at - now).total_seconds() <= settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS
    }
    if not near:
        return
    by_wait: dict[float, list[uuid.UUID]] = {}
    for endpoint, oldest in probe_deliveries(endpoints=near, now=now, due=False).items():
        by_wait.setdefault(near[endpoint], []).append(oldest)
    for wait, oldest_ones in by_wait.items():
        after_commit(deliveries_enqueue, oldest_ones, countdown=wait)


def shares_widen(freed: dict[uuid.UUID, int], claims: list[Claim], closed: set[uuid.UUID]) -> None:
    """After attempts to a webhook whose circuit they closed (a probe's answer, or one to an
    attempt sent before it opened) or that was catching up after a pause (it may be over),
    the deliveries waiting behind them may take all of its slots again, not one per attempt:
    raise the webhook's share in ``freed`` to its concurrency. The claim still admits no more
    than its limits do."""
    for claim in claims:
        endpoint = claim.delivery.subscription_id
        if (endpoint in closed or claim.catching_up) and endpoint in freed:
            concurrency = (
                claim.delivery.subscription.max_concurrency
                or settings.WEBHOOKS_ENDPOINT_CONCURRENCY
            )
            freed[endpoint] = max(freed[endpoint], concurrency)


def _waiting_pull(
    claims: list[Claim], owned: set[uuid.UUID], circuits: CircuitChanges, now: dt.datetime
) -> None:
    """Hand the slots this batch freed to deliveries that waited for them.

    A delivery its webhook's limits held back has no message (``enqueued_at`` is empty); as
    many as finished here, per webhook, are marked and enqueued, oldest first. A webhook whose
    circuit is open gets none: its probe comes first.
    """
    freed: dict[uuid.UUID, int] = {}
    for claim in claims:
        endpoint = claim.delivery.subscription_id
        if claim.delivery.pk in owned and endpoint not in circuits.opened:
            freed[endpoint] = freed.get(endpoint, 0) + 1
    if not freed:
        return
    shares_widen(freed, claims, circuits.closed)
    with transaction.atomic():
        # The webhooks' locks first, as ``deliveries_claim_waiting`` takes them: a claim that
        # is leaving deliveries waiting commits before this reads them.
        endpoints_lock(list(freed))
        waiting: list[uuid.UUID] = []
        for endpoint, share in freed.items():  # each webhook its own share
            waiting += (
                waiting_due(now)
                .select_for_update(skip_locked=True)
                .filter(subscription_id=endpoint)
                .values_list("pk", flat=True)[:share]
            )
        if waiting:
            # A catching-up webhook's stay marked waiting: its next is the first of those
            # (pausing.py); the messages only wake the claim.
            Delivery.objects.filter(
                pk__in=waiting, subscription__catching_up_since__isnull=True
            ).update(enqueued_at=now)
            after_commit(deliveries_enqueue, waiting)
