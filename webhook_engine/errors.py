"""The kinds of failure an attempt can end with. Pure values, shared by every stage.

The transport reports network and HTTP outcomes; the other stages add their own (a disabled
webhook, a body template that cannot be rendered, a secret no key can read). The delivery and
attempt models store the value; ``ERROR_KIND_LABELS`` names it for people.
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


ERROR_KIND_LABELS: dict[ErrorKind, str] = {
    ErrorKind.NONE: "None",
    ErrorKind.HTTP_STATUS: "HTTP error status",
    ErrorKind.REDIRECT: "Redirect (not followed)",
    ErrorKind.TIMEOUT: "Timeout",
    ErrorKind.CONNECTION: "Connection failed",
    ErrorKind.DNS: "DNS lookup failed",
    ErrorKind.TLS: "TLS error",
    ErrorKind.BLOCKED: "Destination not allowed",
    ErrorKind.INVALID_URL: "Invalid URL",
    ErrorKind.RESPONSE: "Malformed response",
    ErrorKind.INTERRUPTED: "Attempt interrupted",
    ErrorKind.DISABLED: "Subscription disabled",
    ErrorKind.TEMPLATE: "Body template error",
    ErrorKind.CONFIGURATION: "Configuration error",
    ErrorKind.INTERNAL: "Internal error",
}

# Failures that network conditions cause: an endpoint that keeps answering with them is down.
NETWORK_FAILURES = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.DNS, ErrorKind.TLS, ErrorKind.RESPONSE}
)
