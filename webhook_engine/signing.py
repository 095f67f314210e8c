"""Standard Webhooks signatures (https://www.standardwebhooks.com/). Pure functions.

``v1`` is HMAC-SHA256 over ``{msg_id}.{timestamp}.{body}`` with a subscription's ``whsec_``
secret; ``v1a`` is an Ed25519 signature of the same content with the platform's key, whose public
half receivers download. Both go in ``webhook-signature`` (``v1,<base64> v1a,<base64>``), one
entry per secret or key, separated by spaces.

The vendor profiles' schemes are here too: Edusign's hex HMAC-SHA256 of the body
(``hmac_sha256_hex``) and edudip's ECDSA P-256 signature of the body (``sign_ecdsa``), whose public
key receivers download as PEM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
)


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


# --- Asymmetric signatures (v1a, Ed25519) ----------------------------------------------------


def ed25519_key_load(value: str) -> Ed25519PrivateKey:
    """A private key from its Standard Webhooks form ``whsk_<base64 of the 32-byte seed>``.

    Raises ``ValueError`` for anything else.
    """
    if not value.startswith("whsk_"):
        raise ValueError("An Ed25519 signing key starts with whsk_.")
    try:
        raw = base64.b64decode(value.removeprefix("whsk_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("The Ed25519 signing key is not valid base64.") from exc
    if len(raw) not in (32, 64):
        raise ValueError("An Ed25519 signing key holds 32 bytes (or 64 with its public half).")
    return Ed25519PrivateKey.from_private_bytes(raw[:32])


def sign_v1a(*, key: Ed25519PrivateKey, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1a,<base64 Ed25519 signature>`` of one message."""
    signature = key.sign(signed_content(msg_id=msg_id, timestamp=timestamp, body=body))
    return "v1a," + base64.b64encode(signature).decode()


def _public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_pem(key: Ed25519PrivateKey) -> str:
    """The public half as a PEM SubjectPublicKeyInfo block."""
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def public_key_whpk(key: Ed25519PrivateKey) -> str:
    """The public half in Standard Webhooks form, ``whpk_<base64>``."""
    return "whpk_" + base64.b64encode(_public_raw(key)).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_key_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The public half as a JWK, its ``kid`` the RFC 7638 thumbprint."""
    x = _b64url(_public_raw(key))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


# --- Vendor schemes (Edusign's HMAC, edudip's ECDSA) --------------------------------------------


def hmac_sha256_hex(*, secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body keyed with the secret's text (UTF-8), as 64 lowercase hex digits:
    what an Edusign receiver computes with its client secret."""
    return hmac.new(secret.encode(), body, "sha256").hexdigest()


def ecdsa_key_load(value: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from base64: its 32-byte private number, or a DER PKCS#8 key.

    Raises ``ValueError`` for anything else.
    """
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("The ECDSA signing key is not valid base64.") from exc
    if len(raw) == 32:
        number = int.from_bytes(raw, "big")
        try:
            return ec.derive_private_key(number, ec.SECP256R1())
        except ValueError as exc:
            raise ValueError("The ECDSA signing key is not a valid P-256 private number.") from exc
    try:
        key = load_der_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "The ECDSA signing key is neither 32 bytes nor a DER PKCS#8 private key."
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("The ECDSA signing key must be a P-256 (prime256v1) key.")
    return key


def sign_ecdsa(*, key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    """The base64 DER ECDSA signature of the body's SHA-256 hash (what PHP's ``openssl_verify``
    with ``OPENSSL_ALGO_SHA256`` and Node's ``crypto.verify("sha256", ...)`` check)."""
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


def ecdsa_public_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """The public half as a PEM SubjectPublicKeyInfo block."""
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
