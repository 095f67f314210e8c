"""edudip's webhooks, as its knowledge-base article on webhooks describes them.

edudip publishes no payload: only that webhooks are "sent JSON serialized" and that its
categories are ``webinar.created``, ``webinar.updated`` and ``webinar.deleted`` (our keys as
they are). The body is therefore the standard envelope, in JSON. What the article does fix is
the signature: ``X-Edudip-Signature-Algorithm`` names the hash (``SHA256``) and
``X-Edudip-Signature`` carries an asymmetric signature of the payload, verified with a public
key the receiver downloads. That is ECDSA on P-256 (the later version of the article says
"We use ECDSA") over the SHA-256 hash of the body bytes, DER-encoded and sent in base64, with
the platform's key (``WEBHOOKS_ECDSA_KEY``), whose public half is served as PEM.
"""

from __future__ import annotations

from typing import Any

from ..signing import sign_ecdsa
from .base import HeaderRequest, Profile, SigningKeyMissing
from .mapping import LOCAL, Field, Spec
from .names import EDUDIP, SEED_EVENT_NAMES

ENVELOPE: dict[str, Spec] = {
    "id": Field("event.id"),
    "type": Field("event.type"),
    "school": Field("school"),
    "timestamp": Field("event.occurred_at"),
    "data": Field("data"),
}

EVENTS: dict[str, Any] = {row.key: ENVELOPE for row in SEED_EVENT_NAMES if row.vendor == EDUDIP}

ALGORITHM = "SHA256"


def headers(request: HeaderRequest) -> dict[str, str]:
    """edudip's signature headers; raises ``SigningKeyMissing`` without the platform's key."""
    if request.ecdsa_key is None:
        raise SigningKeyMissing(
            "The edudip profile signs with the platform's ECDSA key, and none is configured "
            "(WEBHOOKS_ECDSA_KEY); nothing was sent."
        )
    return {
        "X-Edudip-Signature-Algorithm": ALGORITHM,
        "X-Edudip-Signature": sign_ecdsa(key=request.ecdsa_key, body=request.body),
    }


PROFILE = Profile(
    key="edudip",
    label="edudip",
    vendor=EDUDIP,
    content_types=("json",),
    dates=LOCAL,
    events=EVENTS,
    body_doc=(
        "the standard envelope in JSON (edudip publishes no payload); its categories are our "
        "`webinar.*` keys"
    ),
    dates_doc="the school's time zone, as in the standard envelope",
    headers_doc="`X-Edudip-Signature-Algorithm: SHA256`, `X-Edudip-Signature`",
    signature_doc=(
        "`X-Edudip-Signature`: base64 DER ECDSA P-256 signature of the body's SHA-256 hash, "
        "verified with the public key at `/.well-known/webhooks/ecdsa-public-key.pem`"
    ),
    headers=headers,
    needs_ecdsa_key=True,
)
