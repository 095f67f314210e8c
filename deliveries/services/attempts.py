"""Attempts: claim due deliveries, send them concurrently, record every result.

The three stages live in ``claim.py``, ``send.py`` and ``record.py``; this module runs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from ..models import DeliveryAttempt
from .claim import deliveries_claim, deliveries_requeue_early
from .record import deliveries_record, receivers_gone_disable
from .send import deliveries_send


def delivery_attempt(*, delivery_id: uuid.UUID | str) -> DeliveryAttempt | None:
    """Make the next attempt of one due delivery; see ``deliveries_attempt``."""
    attempts = deliveries_attempt(delivery_ids=[delivery_id])
    return attempts[0] if attempts else None


def deliveries_attempt(*, delivery_ids: Iterable[uuid.UUID | str]) -> list[DeliveryAttempt]:
    """Attempt every due, unclaimed delivery among ``delivery_ids`` and record the attempts.

    The deliveries are claimed with one conditional UPDATE: a delivery that is final, not yet due
    or claimed by another worker is left alone, so a duplicate task message sends nothing. The
    requests go out concurrently (a slow receiver does not hold up the others) and no database
    transaction is open while they are in flight. The results are written in one transaction.

    After its attempt a delivery is ``delivered``, scheduled for its next automatic attempt, or
    ``failed`` with the reason of its last attempt. Each delivery's row says what the attempt is
    (automatic, a manual retrigger, a Send Test); manual and test attempts never schedule
    automatic ones. A 410 answer disables the webhook; ``Retry-After`` on a 429 or 503 pushes the
    next attempt back, never past the retry window. Returns the attempts made, in the order of
    ``delivery_ids``.
    """
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    claims = deliveries_claim(delivery_ids=ids)
    if len(claims) < len(ids):
        claimed = {str(claim.delivery.pk) for claim in claims}
        deliveries_requeue_early(delivery_ids=[i for i in ids if i not in claimed])
    if not claims:
        return []
    results = deliveries_send(claims)
    attempts = deliveries_record(claims=claims, results=results)
    receivers_gone_disable(claims, results)
    return attempts
