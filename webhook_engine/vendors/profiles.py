"""Delivery profiles: a webhook speaks Standard Webhooks (the default) or exactly as one of the
seed vendors does, so a receiver written for Edusign, BrainCert, eduMe or edudip works unchanged.

A profile fixes the body of each event type (``profile_body``, from the vendor's declarative
mapping in its own module), its date format and event names, and the request's headers and
signature (``profile_headers``, the one place headers are made). Pure functions, no database.

Every profile sends the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) and ``X-Webhook-Event`` / ``-School`` / ``-Lang`` / ``-Attempt``; a vendor
profile adds the vendor's own headers. Vendor receivers ignore headers they do not know, and
the extra ones give them a stable delivery id, replay protection and a signature that carries
every secret during a rotation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..signing import sign_v1, sign_v1a, signature_header
from . import braincert, edudip, edume, edusign
from .base import HeaderRequest, Profile, SigningKeyMissing
from .mapping import Context, spec_apply

STANDARD = "standard"

STANDARD_PROFILE = Profile(
    key=STANDARD,
    label="Standard Webhooks",
    vendor="",
    content_types=("json", "xml"),
    dates=None,
    events=None,
    body_doc=(
        "the envelope `{id, type, school, timestamp, data}` (under `<webhook>` in XML), or the "
        "webhook's own body template"
    ),
    dates_doc="the school's time zone with its UTC offset, `2026-03-29T01:30:00+01:00`",
    headers_doc="`X-Webhook-Event`, `X-Webhook-School`, `X-Webhook-Lang`, `X-Webhook-Attempt`",
    signature_doc=(
        "`webhook-signature`: `v1` HMAC-SHA256 per `whsec_` secret, `v1a` Ed25519 when turned on"
    ),
)

PROFILES: dict[str, Profile] = {
    profile.key: profile
    for profile in (
        STANDARD_PROFILE,
        edusign.PROFILE,
        braincert.PROFILE,
        edume.PROFILE,
        edudip.PROFILE,
    )
}


def profile_get(key: str) -> Profile:
    """The profile named ``key``; ``ValueError`` for an unknown one."""
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"Unknown delivery profile {key!r}") from None


class ProfileEventMissing(ValueError):
    """The profile's vendor has no event for this event type."""


def profile_body(key: str, envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The body the vendor sends for this event, as a JSON value (an object).

    ``envelope`` is the standard envelope (``envelope.envelope_build``: dates in the school's
    zone). Raises ``ProfileEventMissing`` when the vendor has no such event, and ``ValueError``
    for the standard profile, whose body is the envelope or the webhook's template.
    """
    profile = profile_get(key)
    if profile.events is None or profile.dates is None:
        raise ValueError("The standard profile's body is the envelope or the body template.")
    event_type = str(envelope["type"])
    spec = profile.events.get(event_type)
    if spec is None:
        raise ProfileEventMissing(
            f"{profile.label} has no event for {event_type}: a webhook with the "
            f"{profile.label} profile receives only {profile.label}'s events."
        )
    root = {
        "event": {
            "id": envelope["id"],
            "type": event_type,
            "occurred_at": envelope["timestamp"],
        },
        "school": dict(envelope["school"]),
        "data": envelope["data"],
    }
    body = spec_apply(spec, root, Context(root=root, dates=profile.dates))
    return body if isinstance(body, dict) else {}


def profile_headers(
    key: str,
    *,
    body: bytes,
    content_type: str,
    msg_id: str,
    timestamp: int,
    event_type: str,
    attempt: int,
    school_id: int,
    school_language: str,
    webhook_id: str,
    secrets: Sequence[str],
    ed25519_keys: Sequence[Ed25519PrivateKey] = (),
    ecdsa_key: EllipticCurvePrivateKey | None = None,
) -> dict[str, str]:
    """Every header the product sets on one request of a webhook with this profile.

    ``secrets`` are the webhook's ``whsec_`` secrets that sign now, newest first (at least
    one); ``ed25519_keys`` sign ``v1a`` when the webhook turned it on; ``ecdsa_key`` is the
    platform's P-256 key (edudip). Basic authentication and custom headers are the caller's.
    Raises ``SigningKeyMissing`` when the profile needs a platform key that is not given.
    """
    if not secrets:
        raise SigningKeyMissing("The webhook has no signing secret.")
    profile = profile_get(key)
    signatures = [
        sign_v1(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body) for secret in secrets
    ]
    signatures += [
        sign_v1a(key=ed25519_key, msg_id=msg_id, timestamp=timestamp, body=body)
        for ed25519_key in ed25519_keys
    ]
    headers = {
        "Content-Type": content_type,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signatures),
        "X-Webhook-Event": event_type,
        "X-Webhook-School": str(school_id),
        "X-Webhook-Lang": school_language,
        "X-Webhook-Attempt": str(attempt),
    }
    if profile.headers is not None:
        headers.update(
            profile.headers(
                HeaderRequest(
                    body=body,
                    content_type=content_type,
                    msg_id=msg_id,
                    timestamp=timestamp,
                    event_type=event_type,
                    attempt=attempt,
                    school_id=school_id,
                    school_language=school_language,
                    webhook_id=webhook_id,
                    secrets=secrets,
                    ed25519_keys=ed25519_keys,
                    ecdsa_key=ecdsa_key,
                )
            )
        )
    return headers


# Header names the product sets (or a profile may set): a custom header may not use them.
PRODUCT_HEADER_PREFIXES = ("webhook-", "x-webhook-", "x-edusign-", "x-edudip-")

__all__ = [
    "PRODUCT_HEADER_PREFIXES",
    "PROFILES",
    "STANDARD",
    "HeaderRequest",
    "Profile",
    "ProfileEventMissing",
    "SigningKeyMissing",
    "profile_body",
    "profile_get",
    "profile_headers",
]
