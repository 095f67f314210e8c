"""Sending claimed deliveries: each request is built (secrets decrypted, signed) and sent
concurrently with the hardened transport; no database access while requests are in flight."""

from __future__ import annotations

import base64
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from subscriptions.crypto import SecretUnreadable, secret_decrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import subscription_custom_headers, subscription_url
from webhook_engine.errors import ErrorKind
from webhook_engine.signing import message_id, sign_v1, sign_v1a, signature_header
from webhook_engine.transport import TransportResult

from .claim import Claim
from .config import ed25519_keys, transport_get

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
# Custom headers that by their name carry a credential (X-Api-Key, X-Auth-Token, ...).
_SECRET_HEADER_NAME = re.compile(r"auth|token|secret|passw|api[-_]?key|credential|cookie", re.I)


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


def deliveries_send(claims: list[Claim]) -> list[TransportResult]:
    """Send each claimed delivery once and return the results, in the order of ``claims``.

    Never raises for a receiver's failure: a disabled webhook, an unreadable secret or a
    missing signing secret is a result that says so, with nothing sent. No database access
    once the requests are built.
    """
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


def _request_build(claim: Claim) -> _Request:
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
        # Prefetched by deliveries_claim (only the secrets that still sign).
        active: list[SigningSecret] = getattr(subscription, "active_secrets", [])
        secrets = [secret_decrypt(s.secret_encrypted) for s in active]
        password = (
            secret_decrypt(subscription.basic_auth_password_encrypted)
            if subscription.basic_auth_enabled
            else ""
        )
        # The URL and the custom headers with their secret parts decrypted (subscriptions').
        url = subscription_url(subscription=subscription)
        custom_headers = subscription_custom_headers(subscription=subscription)
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
    headers = dict(custom_headers)
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
    return _Request(url, body, headers)


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
