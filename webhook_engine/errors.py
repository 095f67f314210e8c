"""The kinds of failure an attempt can end with. Pure values, shared by every stage.

The transport reports network and HTTP outcomes; the other stages add their own (a disabled
webhook, a body template that cannot be rendered, a secret no key can read). The delivery and
attempt models store the value and name it for people, in their language (``deliveries.models``).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    NONE = ""
    HTTP_STATUS = "http_status"
    REDIRECT = "redirect"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    DNS = "dns"
    TLS = "tls"
    BLOCKED = "blocked"
    INVALID_URL = "invalid_url"
    RESPONSE = "response"
    INTERRUPTED = "interrupted"
    DISABLED = "disabled"
    TEMPLATE = "template"
    CONFIGURATION = "configuration"
    INTERNAL = "internal"


# Failures that network conditions cause: an endpoint that keeps answering with them is down.
NETWORK_FAILURES = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.DNS, ErrorKind.TLS, ErrorKind.RESPONSE}
)
