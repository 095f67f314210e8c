"""Why an attempt failed, in words a school admin can act on. Pure functions, no database."""

from __future__ import annotations

from webhook_engine.errors import ErrorKind

_STATUS: dict[int, str] = {
    400: (
        "the receiver refused the request as malformed — check that it expects this content type "
        "(JSON or XML) and this body; its answer below usually says what it did not like"
    ),
    401: (
        "the receiver rejected the credentials — check the basic-auth username and password, "
        "or the token it expects in a custom header"
    ),
    403: (
        "the receiver refused access — check the credentials, any token it expects in a custom "
        "header, and that it accepts requests from this platform"
    ),
    404: "nothing answers at this URL — check the webhook URL's host and path",
    405: "the URL does not accept POST requests — check that it is the receiver's webhook URL",
    408: (
        "the receiver gave up waiting for the request — it is overloaded or a proxy in front of "
        "it timed out; retries continue automatically"
    ),
    409: (
        "the receiver reported a conflict — it may have processed this event already; its "
        "answer below says more"
    ),
    410: (
        "the receiver says this endpoint is gone, so the webhook was disabled — update the URL "
        "(or remove the webhook), then re-enable it"
    ),
    413: (
        "the body is too large for the receiver — raise its size limit, or send less with a "
        "custom webhook body"
    ),
    415: (
        "the receiver does not accept this content type — switch the webhook between JSON and "
        "XML to what the receiver expects"
    ),
    422: (
        "the receiver could not process the body — check that its fields match what the "
        "receiver expects (a custom webhook body can reshape it) and that it verifies the "
        "signature with the current signing secret"
    ),
    429: (
        "the receiver is rate-limiting this webhook — retries wait as long as its Retry-After "
        "asks; if it persists, ask the receiver's operator for a higher limit"
    ),
    500: (
        "the receiver failed while handling the request (an error on its side) — check the "
        "receiver's logs; retries continue automatically"
    ),
    501: "the receiver does not implement POST at this URL — check the webhook URL",
    502: (
        "a proxy in front of the receiver got no valid answer from it — the receiver is down "
        "or crashing; retries continue automatically"
    ),
    503: (
        "the receiver is unavailable (down for maintenance or overloaded) — retries continue "
        "automatically, honouring its Retry-After"
    ),
    504: (
        "a proxy in front of the receiver timed out waiting for it — the receiver is too slow; "
        "have it answer first and do its work afterwards"
    ),
}

_KIND: dict[str, str] = {
    ErrorKind.REDIRECT: (
        "The receiver answered with a redirect, which webhooks never follow — use the final URL "
        "it points to (often https:// instead of http://, or with a trailing slash)."
    ),
    ErrorKind.TIMEOUT: (
        "No complete answer within {timeout} seconds — the receiver is too slow; have it answer "
        "2xx at once and do its work afterwards."
    ),
    ErrorKind.CONNECTION: (
        "The connection was refused or cut — check the URL's host and port, and that the "
        "receiver is running and reachable from the internet."
    ),
    ErrorKind.DNS: (
        "The URL's host name does not resolve — check its spelling and the domain's DNS records."
    ),
    ErrorKind.TLS: (
        "The secure (https) connection failed — the receiver's certificate is invalid, expired, "
        "self-signed or for another host name; fix the certificate on the receiver."
    ),
    ErrorKind.BLOCKED: (
        "The URL leads to a private, local or reserved address, where webhooks are never sent — "
        "use the receiver's public address."
    ),
    ErrorKind.INVALID_URL: "The webhook URL is not a valid http(s) URL — correct it.",
    ErrorKind.RESPONSE: (
        "The receiver's answer was not valid HTTP — check the server or proxy software in front "
        "of the endpoint."
    ),
    ErrorKind.INTERRUPTED: (
        "The attempt was interrupted (the sending worker stopped) before it finished; it was "
        "retried automatically — nothing to do."
    ),
    ErrorKind.DISABLED: (
        "The webhook is disabled, so nothing was sent — fix the receiver, re-enable the webhook, "
        "then retrigger this delivery (or recover every failed one)."
    ),
    ErrorKind.TEMPLATE: (
        "The webhook body could not be rendered for this event, so nothing was sent — fix the "
        "Webhook Body (the preview shows the result), then retrigger."
    ),
    ErrorKind.CONFIGURATION: (
        "A secret of this webhook could not be used (its signing secret or basic-auth password "
        "cannot be read with the platform's keys), so nothing was sent — rotate the signing "
        "secret, re-enter the password, or ask the platform's operators."
    ),
    ErrorKind.INTERNAL: (
        "An unexpected error on the platform stopped the attempt — retrigger it later; if it "
        "happens again, tell the platform's operators."
    ),
}


def failure_explain(*, error_kind: str, status: int | None, timeout_seconds: float = 15) -> str:
    """One sentence on what went wrong and what to do, for an attempt's error kind and HTTP
    status; empty for a success (``error_kind`` empty and a 2xx or no status)."""
    if error_kind == ErrorKind.HTTP_STATUS or (not error_kind and status and status >= 300):
        if status is None:
            return "The receiver answered with an error status."
        if status in _STATUS:
            return f"{status}: {_STATUS[status]}."
        if 300 <= status < 400:
            return (
                f"{status}: {_KIND[ErrorKind.REDIRECT][0].lower()}{_KIND[ErrorKind.REDIRECT][1:]}"
            )
        if 400 <= status < 500:
            return (
                f"{status}: the receiver refused the request — its answer below usually says "
                "why; fix that on the receiver or in the webhook's settings."
            )
        return (
            f"{status}: the receiver had an error on its side — check the receiver's logs; "
            "retries continue automatically."
        )
    if error_kind == ErrorKind.REDIRECT and status:
        text = _KIND[ErrorKind.REDIRECT]
        return f"{status}: {text[0].lower()}{text[1:]}"
    if error_kind in _KIND:
        return _KIND[error_kind].format(timeout=f"{timeout_seconds:g}")
    if error_kind:
        return "The attempt failed; the error below has the details."
    return ""
