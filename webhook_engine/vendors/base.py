"""What a delivery profile is: the body of each event type, its date format, and its headers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .mapping import Format, Spec


class SigningKeyMissing(ValueError):
    """The profile signs with a platform key that is not configured; nothing may be sent."""


@dataclass(frozen=True)
class HeaderRequest:
    """Everything the headers of one request are made from (plain values, secrets in clear)."""

    body: bytes
    content_type: str  # the Content-Type header value
    msg_id: str  # webhook-id: the delivery's, the same on every retry
    timestamp: int  # when this attempt is sent, Unix seconds
    event_type: str  # our catalog key
    attempt: int
    school_id: int
    school_language: str
    webhook_id: str
    secrets: Sequence[str]  # the webhook's whsec_ secrets that sign now, newest first
    ed25519_keys: Sequence[Ed25519PrivateKey] = ()  # when the webhook turned v1a on
    ecdsa_key: EllipticCurvePrivateKey | None = None  # the platform's P-256 key, if configured


@dataclass(frozen=True)
class Profile:
    """How a webhook speaks: as the standard envelope, or exactly as one seed vendor does.

    ``events`` maps each of our event types the vendor has to the spec of its body (``mapping``);
    ``None`` means every event type, in the standard envelope (or the webhook's body template).
    ``headers`` adds the vendor's own headers to the standard ones. The ``*_doc`` texts are what
    the reference says about it.
    """

    key: str
    label: str
    vendor: str  # the name in ``names.py`` ("" for the standard profile)
    content_types: tuple[str, ...]
    dates: Format | None
    events: Mapping[str, Spec] | None
    body_doc: str
    dates_doc: str
    headers_doc: str
    signature_doc: str
    headers: Callable[[HeaderRequest], dict[str, str]] | None = None
    needs_ecdsa_key: bool = False

    def has(self, event_type: str) -> bool:
        """Whether a webhook with this profile receives the event type."""
        return self.events is None or event_type in self.events
