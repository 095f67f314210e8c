"""Custom request headers: what RFC 9110 lets a header name and value be, and which names say
they carry a credential. Pure functions.

A header that passes these checks can be sent by the transport (``http.client`` encodes values
as Latin-1 and refuses line breaks), so a webhook never saves a header every delivery would then
fail on. The messages say what is wrong and what to do, in the language active when they are
made (the reader's in the admin and the API).
"""

from __future__ import annotations

import functools
import re

from django.utils.translation import gettext as _

from .inputs import printable

# RFC 9110 section 5.6.2: a field name is a token.
TOKEN_CHARACTERS = "!#$%&'*+-.^_`|~"  # noqa: S105 - the RFC's token characters
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # whole names only: fullmatch
# Servers commonly refuse header lines past 8 KB; names this long are never real.
MAX_HEADER_NAME_CHARACTERS = 100
MAX_HEADER_VALUE_CHARACTERS = 1000
# Names that by themselves say the value is a credential (X-Api-Key, X-Auth-Token, X-Receiver-Sig,
# X-Hub-Signature, ...): their values are kept secret whether or not the webhook says so.
SECRET_HEADER_NAME = re.compile(
    r"auth|token|secret|passw|pwd|api[-_]?key|(^|[-_])key($|[-_])|credential|cookie|session"
    r"|(^|[-_])sig($|[-_])|signature|hmac|bearer|jwt|private",
    re.IGNORECASE,
)


def header_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a header name, or None."""
    if not name:
        return _("A header name cannot be empty.")
    if len(name) > MAX_HEADER_NAME_CHARACTERS:
        return _("The header name %(name)s has %(count)s characters; the limit is %(limit)s.") % {
            "name": repr(printable(name, 30)),
            "count": len(name),
            "limit": MAX_HEADER_NAME_CHARACTERS,
        }
    if not _TOKEN.fullmatch(name):
        bad = next(char for char in name if not _TOKEN.fullmatch(char))
        return _(
            "%(name)s is not a valid header name: it contains %(character)s. Use letters, "
            "digits and %(allowed)s (RFC 9110, 5.6.2)."
        ) % {
            "name": repr(printable(name, 40)),
            "character": _character(bad),
            "allowed": TOKEN_CHARACTERS,
        }
    return None


def header_value_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be the value of header ``name``, or None.

    RFC 9110 (5.5): visible ASCII, spaces and tabs, and the Latin-1 range U+0080 to U+00FF,
    with no space at either end. Anything else (a line break, a control character, 日本語,
    U+2028) cannot be written in an HTTP/1.1 header.
    """
    if len(value) > MAX_HEADER_VALUE_CHARACTERS:
        return _("The value of %(name)s has %(count)s characters; the limit is %(limit)s.") % {
            "name": name,
            "count": len(value),
            "limit": MAX_HEADER_VALUE_CHARACTERS,
        }
    for char in value:
        code = ord(char)
        if char in "\r\n":
            return _("The value of %(name)s cannot contain line breaks.") % {"name": name}
        if char == "\t" or 0x20 <= code <= 0x7E or 0x80 <= code <= 0xFF:
            if 0x80 <= code < 0xA0:
                return _value_refused(name, char)
            continue
        return _value_refused(name, char)
    if value != value.strip(" \t"):
        return _("The value of %(name)s starts or ends with a space; remove it.") % {"name": name}
    return None


def _value_refused(name: str, char: str) -> str:
    return _(
        "The value of %(name)s contains %(character)s, which an HTTP header cannot carry "
        "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
        "base64 or percent-encoding."
    ) % {"name": name, "character": _character(char)}


def _character(char: str) -> str:
    code = ord(char)
    if char.isprintable() and not 0xD800 <= code <= 0xDFFF:
        return f"{char!r} (U+{code:04X})"
    return f"U+{code:04X}"


@functools.lru_cache(maxsize=1024)
def header_name_looks_secret(name: str) -> bool:
    """Whether a header's name says it carries a credential (``SECRET_HEADER_NAME``).

    Kept per name: every attempt asks it of each header it sent (``redaction.headers_redact``),
    the same few names each time, and the search took 1.7 µs of CPU a name."""
    return bool(SECRET_HEADER_NAME.search(name))
