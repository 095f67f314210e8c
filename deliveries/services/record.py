"""Recording attempts: every result of a batch in one transaction (the delivery's next state, the
attempt log, the webhook's failure streak), and what a receiver's answer triggers (410)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from subscriptions.models import Subscription
from subscriptions.services import subscription_disable
from webhook_engine.errors import ErrorKind
from webhook_engine.retry import is_retryable, retry_after_seconds
from webhook_engine.transport import TransportResult

from ..models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from ..redaction import attempt_redact
from .claim import Claim
from .config import retry_policy
from .fan_out import deliveries_enqueue

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
    created_at = claim.delivery.created_at
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
    *, claims: list[Claim], results: list[TransportResult]
) -> list[DeliveryAttempt]:
    """Write each claim's result and return the attempts, in the order of ``claims``.

    One transaction for the batch: the delivery's next state (delivered, the next automatic
    attempt, or failed), its attempt row, and its webhook's failure streak. A delivery whose
    lease ran out meanwhile keeps its new owner's state; only its attempt row is written. If
    the batch cannot be written as a whole, each result is written on its own.
    """
    now = timezone.now()
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

    try:
        owned = _results_write(claims, attempts, now)
    except DatabaseError:
        # One row the database refuses must not lose the others' results (their leases would
        # run out and they would be sent again): write them one by one.
        logger.exception("Recording %d attempts at once failed; recording one by one", len(claims))
        owned = set()
        for claim, attempt in zip(claims, attempts, strict=True):
            owned |= _result_write_alone(claim, attempt, now)
    for delivery_id, wait in soon:
        if delivery_id in owned:
            transaction.on_commit(
                partial(deliveries_enqueue, [delivery_id], countdown=wait), robust=True
            )
    lost = [a for a, claim in zip(attempts, claims, strict=True) if claim.delivery.pk not in owned]
    if lost:
        # These leases ran out mid-attempt; other workers may own the rows now. The real results
        # replace the "interrupted" entries the new owners may have written for them.
        logger.warning("%d attempts finished after their lease ran out", len(lost))
        DeliveryAttempt.objects.bulk_create(
            lost,
            update_conflicts=True,
            unique_fields=["delivery", "number"],
            update_fields=_ATTEMPT_RESULT_FIELDS,
        )
    return attempts


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
    claims: list[Claim], attempts: list[DeliveryAttempt], now: dt.datetime
) -> set[uuid.UUID]:
    """Write the batch in one transaction; return the deliveries whose lease was still ours."""
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
            _failure_streaks_update(claims, [_outcome(a) for a in attempts], owned, now)
    return owned


def _result_write_alone(claim: Claim, attempt: DeliveryAttempt, now: dt.datetime) -> set[uuid.UUID]:
    """One delivery's result; if the database refuses it, a bare record that says so."""
    for bare in (False, True):
        if bare:
            attempt.response_headers = {}
            attempt.response_body = ""
            attempt.request_headers = {}
            attempt.error_message = "The attempt's answer could not be stored."
            claim.delivery.last_error = attempt.error_message
        try:
            return _results_write([claim], [attempt], now)
        except DatabaseError:
            logger.exception("Recording attempt %s of %s failed", claim.number, claim.delivery.pk)
    return set()


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
    """A receiver that answers 410 Gone asked to stop: its webhook is disabled (not on a test)."""
    for claim, result in zip(claims, results, strict=True):
        if result.status == 410 and claim.trigger != AttemptTrigger.TEST:
            subscription = claim.delivery.subscription
            subscription_disable(
                subscription=subscription,
                reason=(
                    f"The receiver answered 410 Gone on {timezone.now():%Y-%m-%d %H:%M} UTC: it "
                    "no longer accepts these webhooks."
                ),
            )


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
