"""Secrets at rest: basic-auth passwords, signing secrets and secret header values, encrypted
with Fernet.

The keys come from ``WEBHOOKS_ENCRYPTION_KEYS`` (comma-separated Fernet keys): the first encrypts,
every one decrypts, so a key is rotated by adding the new one last, then putting it first,
running ``manage.py encryption_keys_rotate`` and dropping the old one (every process restarted
after each change: each can read what any other writes). A value that none of the keys
decrypts raises ``SecretUnreadable``; it is never used as if it were the secret.
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured(
            "WEBHOOKS_ENCRYPTION_KEYS is empty: set at least one Fernet key."
        )
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "WEBHOOKS_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'`)."
        ) from exc


def _keys() -> MultiFernet:
    return _fernet(tuple(settings.WEBHOOKS_ENCRYPTION_KEYS))


def secret_encrypt(plaintext: str) -> str:
    """The ciphertext to store for a secret (with the first key)."""
    return _keys().encrypt(plaintext.encode()).decode()


def secret_decrypt(ciphertext: str) -> str:
    """The secret a stored ciphertext holds. Raises ``SecretUnreadable`` for a wrong key.

    Decrypted once per process per ciphertext and set of keys (deliveries sign with the same
    secrets all day; a key rotation changes both, so nothing stale is ever returned).
    """
    return _decrypt_cached(tuple(settings.WEBHOOKS_ENCRYPTION_KEYS), ciphertext)


@lru_cache(maxsize=4096)
def _decrypt_cached(keys: tuple[str, ...], ciphertext: str) -> str:
    try:
        return _fernet(keys).decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with WEBHOOKS_ENCRYPTION_KEYS; "
            "was a key removed before the secrets were re-encrypted?"
        ) from exc


def secret_reencrypt(ciphertext: str) -> str:
    """The same secret encrypted with the first key (for key rotation)."""
    try:
        return _keys().rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("A stored secret cannot be decrypted with any key.") from exc


def headers_encrypt(headers: dict[str, str]) -> str:
    """The ciphertext to store for a webhook's secret headers (``""`` when there are none)."""
    if not headers:
        return ""
    return secret_encrypt(json.dumps(headers, ensure_ascii=False, separators=(",", ":")))


def headers_decrypt(ciphertext: str) -> dict[str, str]:
    """The secret headers a stored ciphertext holds (``{}`` for ``""``), decrypted once per
    process for each ciphertext and set of keys. Raises ``SecretUnreadable`` for a wrong key."""
    if not ciphertext:
        return {}
    return dict(_headers_plaintext(tuple(settings.WEBHOOKS_ENCRYPTION_KEYS), ciphertext))


@lru_cache(maxsize=2048)
def _headers_plaintext(keys: tuple[str, ...], ciphertext: str) -> tuple[tuple[str, str], ...]:
    headers = json.loads(secret_decrypt(ciphertext))
    return tuple((str(name), str(value)) for name, value in headers.items())


def url_decrypt(ciphertext: str) -> str:
    """The URL a stored ciphertext holds, decrypted once per process for each ciphertext and
    set of keys. Raises ``SecretUnreadable`` for a wrong key."""
    return _url_plaintext(tuple(settings.WEBHOOKS_ENCRYPTION_KEYS), ciphertext)


@lru_cache(maxsize=2048)
def _url_plaintext(keys: tuple[str, ...], ciphertext: str) -> str:
    return secret_decrypt(ciphertext)
