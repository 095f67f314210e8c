"""Removing a webhook's secrets from what is kept of an attempt. Pure functions.

A receiver may echo a request back (httpbin, request bins, debug pages), so a secret can come
back in the answer's headers and body, in any of the forms it was sent in: as is, in base64
(basic authentication), percent-encoded (a URL's query), JSON-escaped (an echo as JSON). Every
form of every known secret is replaced by ``REDACTED``, the credentials headers whatever their
value, and the values of a URL's query string.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus

from .headers import header_name_looks_secret
from .vendors import PRODUCT_HEADER_PREFIXES

REDACTED = "[redacted]"
# Shorter values would also hide ordinary text (a password "1234" in every status code).
MIN_SECRET_CHARACTERS = 4
# Request headers that carry a credential whatever their value.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_PERCENT_ESCAPE = re.compile("%[0-9A-F]{2}")


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
    """Every written form of each secret (as is; percent-encoded, with upper- or lower-case
    escapes, or as JavaScript's ``encodeURIComponent`` writes it; JSON-escaped, also with the
    ``\\/`` PHP writes; HTML-escaped), longest first, leaving out those shorter than
    ``MIN_SECRET_CHARACTERS``."""
    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        encoded = {quote(value, safe=""), quote_plus(value, safe=""), quote(value, safe="!'()*~")}
        escaped = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        forms.update(
            {value, html.escape(value), html.escape(value).replace("&#x27;", "&#39;")}
            | encoded
            | {_PERCENT_ESCAPE.sub(lambda match: match.group(0).lower(), form) for form in encoded}
            | escaped
            | {form.replace("/", "\\/") for form in escaped}
        )
    return sorted(
        (form for form in forms if len(form) >= MIN_SECRET_CHARACTERS), key=lambda f: (-len(f), f)
    )


def text_redact(text: str, secrets: list[str], *, truncated: bool = False) -> str:
    """``text`` with every occurrence of each secret (from ``secret_forms``) replaced.

    Occurrences that overlap (two secrets where one ends as the other starts, a secret that
    overlaps itself) are replaced together, as one: replacing one secret after another would
    break the next one's occurrence and leave part of it visible.

    ``truncated``: the text was cut, so it may end with the beginning of a secret; that
    beginning is replaced too.
    """
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        if not secret:
            continue
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
        if truncated:
            for length in range(len(secret) - 1, MIN_SECRET_CHARACTERS - 1, -1):
                if text.endswith(secret[:length]):
                    spans.append((len(text) - length, len(text)))
                    break
    if not spans:
        return text
    parts = []
    done = 0  # text before this is written out
    covered_to = -1  # the end of the span being merged
    for start, end in sorted(spans):
        if start < covered_to:
            covered_to = max(covered_to, end)
            continue
        if covered_to >= 0:
            parts.append(REDACTED)
            done = covered_to
        parts.append(text[done:start])
        covered_to = end
    parts.append(REDACTED)
    parts.append(text[covered_to:])
    return "".join(parts)


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
    credential (an answer's ``WWW-Authenticate`` says why a receiver refused, and stays). The
    product's own headers (``webhook-signature``, a profile's ``x-edusign-hmac``, ...) are made
    for each message and no custom header may take their names: they stay readable."""
    redacted = {}
    for name, value in headers.items():
        lowered = name.lower()
        if by_name and (
            lowered in CREDENTIAL_HEADERS
            or (not lowered.startswith(PRODUCT_HEADER_PREFIXES) and header_name_looks_secret(name))
        ):
            redacted[name] = REDACTED
        else:
            redacted[name] = text_redact(str(value), secrets)
    return redacted


def _query_split(url: str) -> tuple[str, list[tuple[str, str, str]], str]:
    """``(before the query, [(name, "=" or "", value)], "#fragment" or "")``."""
    base, question, rest = url.partition("?")
    if not question:
        return url, [], ""
    query, hash_sign, fragment = rest.partition("#")
    parts = [part.partition("=") for part in query.split("&")] if query else []
    return (
        base,
        [(name, equals, value) for name, equals, value in parts],
        (f"#{fragment}" if hash_sign else ""),
    )


def _query_join(base: str, parts: list[tuple[str, str, str]], fragment: str) -> str:
    return base + ("?" + "&".join(f"{n}{e}{v}" for n, e, v in parts) if parts else "") + fragment


def url_query_secret(url: str) -> bool:
    """Whether the URL's query string has a value (a token, as far as anyone can tell)."""
    return any(value for _name, _equals, value in _query_split(url)[1])


def url_query_mask(url: str, mask: str) -> str:
    """The URL with each value of its query string replaced by ``mask`` (names kept)."""
    base, parts, fragment = _query_split(url)
    return _query_join(base, [(n, e, mask if v else v) for n, e, v in parts], fragment)


def url_query_unmask(url: str, stored: str, mask: str) -> tuple[str, list[str]]:
    """``url`` with each query value given as ``mask`` (as is or percent-encoded) replaced by
    the value of the same parameter in ``stored`` (the same occurrence of the name), and the
    names that have no such value."""
    base, parts, fragment = _query_split(url)
    stored_values: dict[str, list[str]] = {}
    for name, _equals, value in _query_split(stored)[1]:
        stored_values.setdefault(name, []).append(value)
    seen: dict[str, int] = {}
    missing = []
    resolved = []
    for name, equals, value in parts:
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        if value and unquote_plus(value) == mask:
            candidates = stored_values.get(name, [])
            if occurrence < len(candidates) and candidates[occurrence]:
                value = candidates[occurrence]
            else:
                missing.append(unquote_plus(name))
        resolved.append((name, equals, value))
    return _query_join(base, resolved, fragment), missing
