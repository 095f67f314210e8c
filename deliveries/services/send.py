"""Sending claimed deliveries: each request is built (secrets decrypted, signed) and sent
concurrently with the hardened transport; no database access while requests are in flight."""

from __future__ import annotations

import base64
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from common.clock import db_now
from subscriptions.crypto import SecretUnreadable, secret_decrypt
from subscriptions.models import Subscription
from subscriptions.selectors import subscription_custom_headers, subscription_url
from webhook_engine.errors import ErrorKind
from webhook_engine.signing import message_id
from webhook_engine.transport import TransportResult
from webhook_engine.vendors import profile_get, profile_headers

from .claim import Claim, signing_secrets_of
from .config import ecdsa_key, ed25519_keys, transport_get

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
# Custom headers that by their name carry a credential (X-Api-Key, X-Auth-Token, ...).
_SECRET_HEADER_NAME = re.compile(r"auth|token|secret|passw|api[-_]?key|credential|cookie", re.I)


@dataclass(frozen=True)
class Request:
    """One attempt's request, built and signed; ``refusal`` is set when nothing may be sent."""

    url: str
    body: bytes
    headers: dict[str, str]
    # Set when nothing may be sent; the attempt fails with it.
    refusal: TransportResult | None = None


_senders: dict[int, ThreadPoolExecutor] = {}
_senders_lock = threading.Lock()


def sender_pool() -> ThreadPoolExecutor:
    """This process's pool of threads for requests in flight (they never touch the database);
    ``WEBHOOKS_SEND_THREADS`` of them, started as needed."""
    pid = os.getpid()
    executor = _senders.get(pid)
    if executor is None:
        with _senders_lock:
            executor = _senders.get(pid)
            if executor is None:
                executor = ThreadPoolExecutor(
                    max_workers=settings.WEBHOOKS_SEND_THREADS, thread_name_prefix="webhook-send"
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
    requests = [request_build(claim) for claim in claims]
    if len(requests) == 1:
        return [request_send(requests[0])]
    return list(sender_pool().map(request_send, requests))


def request_send(request: Request) -> TransportResult:
    """Send one built request (or return its refusal); never raises for network errors."""
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


def request_build(claim: Claim) -> Request:
    """The signed request of a claimed delivery, or a refusal saying why nothing may be sent
    (a disabled webhook, a secret no key can read, no signing secret)."""
    delivery = claim.delivery
    subscription: Subscription = delivery.subscription
    if not subscription.is_active and not delivery.is_test:
        reason = subscription.disabled_reason or "it was turned off"
        return Request(
            subscription.url,
            b"",
            {},
            _refusal(ErrorKind.DISABLED, f"The webhook is disabled ({reason}); nothing was sent."),
        )
    try:
        # Prefetched by deliveries_claim (only the secrets that still sign).
        active = signing_secrets_of(subscription, db_now(measure=False))
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
        return Request(subscription.url, b"", {}, _refusal(ErrorKind.CONFIGURATION, str(exc)))
    if not secrets:
        message = "The webhook has no signing secret; rotate its secret to create one."
        return Request(subscription.url, b"", {}, _refusal(ErrorKind.CONFIGURATION, message))
    body = bytes(delivery.body)
    headers = dict(custom_headers)
    # The product's headers and signatures for the delivery profile the body was rendered in
    # (the webhook's when the event fanned out): made in one place,
    # webhook_engine.vendors.profile_headers.
    try:
        headers.update(
            profile_headers(
                delivery.profile,
                body=body,
                content_type=delivery.content_type,
                msg_id=message_id(delivery.id),
                timestamp=int(timezone.now().timestamp()),
                event_type=delivery.event_type,
                attempt=claim.number,
                school_id=delivery.school.id,
                school_language=delivery.school.language,
                webhook_id=str(subscription.id),
                secrets=secrets,
                ed25519_keys=ed25519_keys() if subscription.sign_ed25519 else (),
                ecdsa_key=ecdsa_key() if profile_get(delivery.profile).needs_ecdsa_key else None,
            )
        )
    except ValueError as exc:  # a key missing or unreadable, or an unknown profile
        message = f"The request could not be signed: {exc}"
        return Request(subscription.url, b"", {}, _refusal(ErrorKind.CONFIGURATION, message))
    if subscription.basic_auth_enabled:
        credentials = f"{subscription.basic_auth_username}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return Request(url, body, headers)


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
