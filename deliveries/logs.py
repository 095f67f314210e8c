"""One log line per delivery attempt, written by the record stage (``metrics.attempts_observe``).

Logger ``deliveries.attempts``, level INFO. The fields, also passed as the record's extra
fields so that ``WEBHOOKS_LOG_FORMAT=json`` writes each under its own key:

``delivery_id``, ``webhook_id`` (the ``webhook-id`` header, ``msg_...``), ``school`` (slug),
``school_id``, ``webhook`` (the webhook's id), ``event_type``, ``attempt`` (1, 2, ...),
``trigger`` (automatic, manual, test), ``outcome`` (delivered, retrying, failed),
``error_kind`` (empty on success), ``status`` (the receiver's HTTP status, or null) and
``duration_ms``.

Identifiers and outcomes only: never a URL (it may hold a receiver's token), a header, a body
or an error message a receiver could have shaped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from webhook_engine.signing import message_id

from .models import Delivery

if TYPE_CHECKING:
    from .models import DeliveryAttempt

logger = logging.getLogger("deliveries.attempts")

_school_cached = Delivery.school.is_cached


def attempts_log(attempts: Sequence[DeliveryAttempt], outcomes: Sequence[str]) -> None:
    """Write one INFO line per attempt; ``outcomes`` gives each attempt's outcome."""
    if not logger.isEnabledFor(logging.INFO):
        return
    for attempt, outcome in zip(attempts, outcomes, strict=True):
        delivery = attempt.delivery
        # The slug when the record stage has the school at hand; never a query per line.
        school = delivery.school.slug if _school_cached(delivery) else str(delivery.school_id)
        fields = {
            "delivery_id": str(delivery.pk),
            "webhook_id": message_id(delivery.pk),
            "school": school,
            "school_id": delivery.school_id,
            "webhook": str(delivery.subscription_id),
            "event_type": delivery.event_type,
            "attempt": attempt.number,
            "trigger": str(attempt.trigger),
            "outcome": outcome,
            "error_kind": str(attempt.error_kind),
            "status": attempt.response_status,
            "duration_ms": attempt.duration_ms,
        }
        logger.info(
            "Attempt %s of delivery %s (%s) to webhook %s of %s: %s%s, %s in %s ms",
            attempt.number,
            fields["delivery_id"],
            fields["webhook_id"],
            fields["webhook"],
            school,
            outcome,
            f" ({attempt.error_kind})" if attempt.error_kind else "",
            f"HTTP {attempt.response_status}" if attempt.response_status else "no answer",
            attempt.duration_ms,
            extra=fields,
        )
