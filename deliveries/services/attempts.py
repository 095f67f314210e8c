"""Attempts: claim due deliveries, send them, record every result.

The stages live in ``claim.py``, ``send.py`` and ``record.py``. This module runs them in the
caller's thread (``deliveries_attempt``: Send Test, and anything that needs the attempts back);
``dispatch.py`` runs them in a worker without holding the worker while receivers answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from common.clock import db_now

from ..models import DeliveryAttempt
from .claim import ClaimOutcome, deliveries_claim, deliveries_requeue_early
from .fan_out import deliveries_enqueue
from .record import deliveries_record, receivers_gone_disable
from .send import deliveries_send


def delivery_attempt(*, delivery_id: uuid.UUID | str) -> DeliveryAttempt | None:
    """Make the next attempt of one due delivery; see ``deliveries_attempt``."""
    attempts = deliveries_attempt(delivery_ids=[delivery_id])
    return attempts[0] if attempts else None


def deliveries_attempt(*, delivery_ids: Iterable[uuid.UUID | str]) -> list[DeliveryAttempt]:
    """Attempt every due, unclaimed delivery among ``delivery_ids`` that its webhook's limits
    let go now, and record the attempts; returns them, in the order of ``delivery_ids``.

    The deliveries are claimed with one conditional UPDATE: a delivery that is final, not yet due
    or claimed by another worker is left alone, so a duplicate task message sends nothing. A
    delivery its webhook's concurrency, rate or open circuit holds back waits for a slot
    (``claim.py``). The requests go out concurrently and no database transaction is open while
    they are in flight. The results are written in one transaction.

    After its attempt a delivery is ``delivered``, scheduled for its next automatic attempt, or
    ``failed`` with the reason of its last attempt. Each delivery's row says what the attempt is
    (automatic, a manual retrigger, a Send Test); manual and test attempts never schedule
    automatic ones. A 410 answer disables the webhook; ``Retry-After`` on a 429 or 503 pushes the
    next attempt back, never past the retry window.
    """
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    outcome = deliveries_claim(delivery_ids=ids)
    claims_followup(ids, outcome)
    if not outcome.claims:
        return []
    results = deliveries_send(outcome.claims)
    attempts = deliveries_record(claims=outcome.claims, results=results)
    receivers_gone_disable(outcome.claims, results)
    return attempts


def claims_followup(ids: list[str], outcome: ClaimOutcome) -> None:
    """What a claim leaves to later: messages that came early are sent again when due, and a
    rate-limited webhook's waiting deliveries get a message for when it has budget again
    (``ClaimOutcome.woken``)."""
    taken = {str(claim.delivery.pk) for claim in outcome.claims}
    held = taken | set(outcome.waiting) | set(outcome.unclaimed)
    if len(held) < len(ids):
        deliveries_requeue_early(delivery_ids=[i for i in ids if i not in held])
    if outcome.retry_at is not None and outcome.woken:
        wait = max(0.0, (outcome.retry_at - db_now()) / dt.timedelta(seconds=1))
        deliveries_enqueue(outcome.woken, countdown=wait)
