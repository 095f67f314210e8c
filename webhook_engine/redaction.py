"""Removing a webhook's secrets from what is kept of an attempt. Pure functions.

A receiver may echo a request back (httpbin, request bins, debug pages), so a secret can come
back in the answer's headers and body, in any of the forms it was sent in: as is, in base64
(basic authentication), percent-encoded (a URL's query), JSON-escaped (an echo as JSON). Every
form of every known secret is replaced by ``REDACTED``, the credentials headers whatever their
value, and the values of a URL's query string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus

from .headers import header_name_looks_secret

REDACTED = "[redacted]"
# Shorter values would also hide ordinary text (a password "1234" in every status code).
MIN_SECRET_CHARACTERS = 4
# Request headers that carry a credential whatever their value.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def url_query_values(url: str) -> list[str]:
    """The values of a URL's query string, as written and decoded (``?token=a%2Bb`` gives
    ``a%2Bb`` and ``a+b``)."""
    query = url.partition("?")[2].partition("#")[0]
    values = []
    for part in query.split("&"):
        _name, equals, value = part.partition("=")
        if equals and value:
            values += [value, unquote_plus(value)]
    return values


def secret_forms(values: Iterable[str]) -> list[str]:
    """Every written form of each secret (as is, percent-encoded, JSON-escaped), longest first,
    leaving out those shorter than ``MIN_SECRET_CHARACTERS``."""
    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        forms.update(
            {
                value,
                quote(value, safe=""),
                quote_plus(value, safe=""),
                json.dumps(value)[1:-1],
                json.dumps(value, ensure_ascii=False)[1:-1],
            }
        )
    return sorted(
        (form for form in forms if len(form) >= MIN_SECRET_CHARACTERS), key=lambda f: (-len(f), f)
    )


def text_redact(text: str, secrets: list[str], *, truncated: bool = False) -> str:
    """``text`` with every occurrence of each secret (from ``secret_forms``) replaced.

    ``truncated``: the text was cut, so it may end with the beginning of a secret; that
    beginning is replaced too.
    """
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if truncated:
        for secret in secrets:
            for length in range(len(secret) - 1, MIN_SECRET_CHARACTERS - 1, -1):
                if text.endswith(secret[:length]):
                    return text[:-length] + REDACTED
    return text


def url_redact(url: str, secrets: Iterable[str] = ()) -> str:
    """The URL with every query value replaced (the names stay, to recognise it), and any secret
    elsewhere in it (its path) too."""
    base, question, rest = url.partition("?")
    base = text_redact(base, list(secrets))
    if not question:
        return base
    query, hash_sign, fragment = rest.partition("#")
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals and value else part)
    return f"{base}?{'&'.join(parts)}" + (f"#{REDACTED}" if hash_sign and fragment else "")


def headers_redact(
    headers: dict[str, str], secrets: list[str], *, by_name: bool = True
) -> dict[str, str]:
    """Headers as they may be kept: every secret in their values replaced and, with ``by_name``
    (the request's headers), the whole value of credential headers and of headers named like a
    credential (an answer's ``WWW-Authenticate`` says why a receiver refused, and stays)."""
    redacted = {}
    for name, value in headers.items():
        lowered = name.lower()
        if by_name and (
            lowered in CREDENTIAL_HEADERS
            or (not lowered.startswith("webhook-") and header_name_looks_secret(name))
        ):
            redacted[name] = REDACTED
        else:
            redacted[name] = text_redact(str(value), secrets)
    return redacted
