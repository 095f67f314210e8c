"""Standard Webhooks signatures (https://www.standardwebhooks.com/). Pure functions.

``v1`` is HMAC-SHA256 over ``{msg_id}.{timestamp}.{body}`` with the subscription's secret, sent as
``webhook-signature: v1,<base64>``; several signatures are separated by spaces.
"""

from __future__ import annotations

import base64
import hmac


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret."""
    encoded = secret.removeprefix("whsec_")  # the Standard Webhooks secret prefix
    return base64.b64decode(encoded, validate=True)


def signed_content(*, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_v1(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64 HMAC-SHA256>`` signature of one message."""
    digest = hmac.new(
        secret_bytes(secret),
        signed_content(msg_id=msg_id, timestamp=timestamp, body=body),
        "sha256",
    ).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(signatures: list[str]) -> str:
    return " ".join(signatures)


def message_id(delivery_id: object) -> str:
    """The ``webhook-id`` of a delivery: stable across its retries, unique per delivery."""
    return f"msg_{getattr(delivery_id, 'hex', delivery_id)}"
