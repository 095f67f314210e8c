"""Attempts: claim due deliveries, send them concurrently, record every result."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Case, F, Prefetch, Q, UUIDField, Value, When
from django.utils import timezone

from subscriptions.crypto import SecretUnreadable, secret_decrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import destination_policy, signing_secrets_active_q
from subscriptions.services import subscription_disable
from webhook_engine.errors import ErrorKind
from webhook_engine.retry import RetryPolicy, is_retryable, retry_after_seconds
from webhook_engine.signing import (
    ed25519_key_load,
    message_id,
    sign_v1,
    sign_v1a,
    signature_header,
)
from webhook_engine.transport import Transport, TransportResult

from ..models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from .fan_out import DELIVER_TASK, deliveries_enqueue

logger = logging.getLogger(__name__)

__all__ = ["DELIVER_TASK", "deliveries_attempt", "delivery_attempt"]

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
# Custom headers that by their name carry a credential (X-Api-Key, X-Auth-Token, ...).
_SECRET_HEADER_NAME = re.compile(r"auth|token|secret|passw|api[-_]?key|credential|cookie", re.I)


def retry_policy() -> RetryPolicy:
    """The retry schedule configured in settings."""
    return RetryPolicy(
        base_seconds=settings.WEBHOOKS_RETRY_BASE_SECONDS,
        max_attempts=settings.WEBHOOKS_RETRY_MAX_ATTEMPTS,
        window_seconds=settings.WEBHOOKS_RETRY_WINDOW_SECONDS,
        jitter=settings.WEBHOOKS_RETRY_JITTER,
    )


_transports: dict[tuple[int, tuple[str, ...]], Transport] = {}


def transport_get() -> Transport:
    """This process's transport (connection pools are not shared across forks)."""
    key = (os.getpid(), tuple(settings.WEBHOOKS_ALLOWED_NETWORKS))
    transport = _transports.get(key)
    if transport is None:
        transport = Transport(policy=destination_policy())
        _transports.clear()
        _transports[key] = transport
    return transport


@lru_cache(maxsize=4)
def _ed25519_keys(values: tuple[str, ...]) -> tuple[Ed25519PrivateKey, ...]:
    return tuple(ed25519_key_load(value) for value in values)


def ed25519_keys() -> tuple[Ed25519PrivateKey, ...]:
    """The platform's Ed25519 signing keys (``WEBHOOKS_ED25519_KEYS``), the current one first."""
    return _ed25519_keys(tuple(settings.WEBHOOKS_ED25519_KEYS))


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    number: int
    token: uuid.UUID
    started_at: dt.datetime
    trigger: str


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
    claims = _deliveries_claim(delivery_ids=ids)
    if len(claims) < len(ids):
        claimed = {str(claim.delivery.pk) for claim in claims}
        _deliveries_requeue_early(delivery_ids=[i for i in ids if i not in claimed])
    if not claims:
        return []
    results = _deliveries_send(claims)
    attempts = _deliveries_record(claims=claims, results=results)
    _receivers_gone_disable(claims, results)
    return attempts


def _deliveries_claim(*, delivery_ids: list[str]) -> list[_Claim]:
    """Take the lease on the due, unclaimed deliveries among ``delivery_ids``.

    One conditional UPDATE marks the rows this call won with a fresh lease token; any number of
    workers racing for the same rows each win a disjoint set. A row whose previous lease ran out
    without a result gets that lost attempt logged as interrupted.
    """
    now = timezone.now()
    token, token_after_lost_lease = uuid.uuid4(), uuid.uuid4()
    claimed = (
        Delivery.objects.filter(
            pk__in=delivery_ids, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(
            attempts=F("attempts") + 1,
            leased_until=now + dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
            # A row still under an (expired) lease was claimed by a worker that never finished.
            lease_token=Case(
                When(leased_until__isnull=True, then=Value(token)),
                default=Value(token_after_lost_lease),
                output_field=UUIDField(),
            ),
            last_attempt_at=now,
        )
    )
    if not claimed:
        return []
    secrets = SigningSecret.objects.filter(signing_secrets_active_q(now)).order_by("-created_at")
    deliveries = {
        str(delivery.pk): delivery
        for delivery in Delivery.objects.select_related("subscription", "school")
        .prefetch_related(
            Prefetch("subscription__signing_secrets", queryset=secrets, to_attr="active_secrets")
        )
        .filter(pk__in=delivery_ids, lease_token__in=[token, token_after_lost_lease])
    }
    interrupted = [d for d in deliveries.values() if d.lease_token == token_after_lost_lease]
    if interrupted:
        _attempts_interrupted_record(interrupted)
    return [
        _Claim(
            delivery=deliveries[i],
            number=deliveries[i].attempts,
            token=token if deliveries[i].lease_token == token else token_after_lost_lease,
            started_at=now,
            trigger=deliveries[i].next_trigger,
        )
        for i in delivery_ids
        if i in deliveries
    ]


def _attempts_interrupted_record(deliveries: list[Delivery]) -> None:
    """Log the attempts whose worker stopped before recording them (the number before this one);
    a record that the late worker did write is kept."""
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=delivery,
                number=delivery.attempts - 1,
                trigger=AttemptTrigger.AUTOMATIC,
                started_at=delivery.last_attempt_at or timezone.now(),
                request_url=delivery.subscription.url,
                error_kind=ErrorKind.INTERRUPTED,
                error_message="The worker stopped before this attempt finished; it was retried.",
            )
            for delivery in deliveries
        ],
        ignore_conflicts=True,
    )


def _deliveries_requeue_early(*, delivery_ids: list[str]) -> None:
    """Messages that arrive just before their delivery is due (clock skew) are sent again."""
    if not delivery_ids:
        return
    now = timezone.now()
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


# --- Sending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    url: str
    body: bytes
    headers: dict[str, str]
    # Set when nothing may be sent; the attempt fails with it.
    refusal: TransportResult | None = None


_senders: dict[int, ThreadPoolExecutor] = {}


def _sender() -> ThreadPoolExecutor:
    """This process's pool of threads for concurrent requests (they never touch the database)."""
    pid = os.getpid()
    executor = _senders.get(pid)
    if executor is None:
        # Room for a few batches at once (a threads or gevent worker pool runs several tasks
        # in one process), so no batch waits for another's slow receivers.
        executor = ThreadPoolExecutor(
            max_workers=4 * settings.WEBHOOKS_DELIVERY_BATCH_SIZE, thread_name_prefix="webhook-send"
        )
        _senders.clear()
        _senders[pid] = executor
    return executor


def _deliveries_send(claims: list[_Claim]) -> list[TransportResult]:
    # Everything the requests need is read and decrypted here, before they go out.
    requests = [_request_build(claim) for claim in claims]
    if len(requests) == 1:
        return [_send(requests[0])]
    return list(_sender().map(_send, requests))


def _send(request: _Request) -> TransportResult:
    if request.refusal is not None:
        return request.refusal
    return transport_get().send(
        url=request.url,
        body=request.body,
        headers=request.headers,
        timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
        max_body_bytes=settings.WEBHOOKS_RESPONSE_BODY_MAX_BYTES,
    )


def _refusal(kind: str, message: str) -> TransportResult:
    return TransportResult(request_headers={}, error_kind=kind, error_message=message)


def _request_build(claim: _Claim) -> _Request:
    delivery = claim.delivery
    subscription: Subscription = delivery.subscription
    if not subscription.is_active and not delivery.is_test:
        reason = subscription.disabled_reason or "it was turned off"
        return _Request(
            subscription.url,
            b"",
            {},
            _refusal(ErrorKind.DISABLED, f"The webhook is disabled ({reason}); nothing was sent."),
        )
    try:
        # Prefetched by _deliveries_claim (only the secrets that still sign).
        active: list[SigningSecret] = getattr(subscription, "active_secrets", [])
        secrets = [secret_decrypt(s.secret_encrypted) for s in active]
        password = (
            secret_decrypt(subscription.basic_auth_password_encrypted)
            if subscription.basic_auth_enabled
            else ""
        )
    except SecretUnreadable as exc:
        return _Request(subscription.url, b"", {}, _refusal(ErrorKind.CONFIGURATION, str(exc)))
    if not secrets:
        message = "The webhook has no signing secret; rotate its secret to create one."
        return _Request(subscription.url, b"", {}, _refusal(ErrorKind.CONFIGURATION, message))
    body = bytes(delivery.body)
    msg_id = message_id(delivery.id)
    timestamp = int(timezone.now().timestamp())
    signatures = [
        sign_v1(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body) for secret in secrets
    ]
    if subscription.sign_ed25519:
        signatures += [
            sign_v1a(key=key, msg_id=msg_id, timestamp=timestamp, body=body)
            for key in ed25519_keys()
        ]
    headers = dict(subscription.custom_headers)
    headers.update(
        {
            "Content-Type": delivery.content_type,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(signatures),
            "X-Webhook-Event": delivery.event_type,
            "X-Webhook-School": str(delivery.school.id),
            "X-Webhook-Lang": delivery.school.language,
            "X-Webhook-Attempt": str(claim.number),
        }
    )
    if subscription.basic_auth_enabled:
        credentials = f"{subscription.basic_auth_username}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return _Request(subscription.url, body, headers)


def headers_redact(headers: dict[str, str]) -> dict[str, str]:
    """Headers as they may be stored and shown: credentials replaced by a marker (Authorization,
    and custom headers whose name says they carry one)."""
    return {
        name: REDACTED
        if name.lower() in SECRET_HEADERS
        or (not name.lower().startswith("webhook-") and _SECRET_HEADER_NAME.search(name))
        else value
        for name, value in headers.items()
    }


# Headers the product sets on every request; any other request header is a webhook's custom one.
_PRODUCT_HEADERS = frozenset(
    {"accept", "accept-encoding", "authorization", "connection", "content-length"}
    | {"content-type", "host", "user-agent"}
)
HIDDEN = "[hidden]"


def headers_custom_hide(headers: dict[str, str]) -> dict[str, str]:
    """Logged request headers for someone who may not see a webhook's secrets: the values of
    its custom headers (which often carry the receiver's tokens) hidden."""
    return {
        name: value
        if name.lower() in _PRODUCT_HEADERS or name.lower().startswith(("webhook-", "x-webhook-"))
        else HIDDEN
        for name, value in headers.items()
    }


# --- Recording ------------------------------------------------------------------------------

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
    *, claim: _Claim, result: TransportResult, now: dt.datetime
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


def _deliveries_record(
    *, claims: list[_Claim], results: list[TransportResult]
) -> list[DeliveryAttempt]:
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
        delivery.last_error = storable(result.error_message)
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
    claims: list[_Claim], attempts: list[DeliveryAttempt], now: dt.datetime
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


def _result_write_alone(
    claim: _Claim, attempt: DeliveryAttempt, now: dt.datetime
) -> set[uuid.UUID]:
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
    claims: list[_Claim], outcomes: list[bool | None], owned: set[uuid.UUID], now: dt.datetime
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


def _receivers_gone_disable(claims: list[_Claim], results: list[TransportResult]) -> None:
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


def _attempt_build(*, claim: _Claim, result: TransportResult) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery=claim.delivery,
        number=claim.number,
        trigger=claim.trigger,
        started_at=claim.started_at,
        duration_ms=result.duration_ms,
        request_url=claim.delivery.subscription.url,
        request_headers=storable(headers_redact(result.request_headers)),
        response_status=result.status,
        response_headers=storable(result.headers),
        response_body=storable(result.body.decode("utf-8", errors="replace")),
        response_body_truncated=result.body_truncated,
        error_kind=result.error_kind,
        error_message=storable(result.error_message),
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
