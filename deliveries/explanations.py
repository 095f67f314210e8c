"""Why an attempt failed, in words a school admin can act on. Pure functions, no database.

Translated (gettext): the sentences are looked up in the active language when explained.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from webhook_engine.errors import ErrorKind

_STATUS: dict[int, Promise] = {
    400: gettext_lazy(
        "the receiver refused the request as malformed — check that it expects this content type "
        "(JSON or XML) and this body; its answer below usually says what it did not like"
    ),
    401: gettext_lazy(
        "the receiver rejected the credentials — check the basic-auth username and password, "
        "or the token it expects in a custom header"
    ),
    403: gettext_lazy(
        "the receiver refused access — check the credentials, any token it expects in a custom "
        "header, and that it accepts requests from this platform"
    ),
    404: gettext_lazy("nothing answers at this URL — check the webhook URL's host and path"),
    405: gettext_lazy(
        "the URL does not accept POST requests — check that it is the receiver's webhook URL"
    ),
    408: gettext_lazy(
        "the receiver gave up waiting for the request — it is overloaded or a proxy in front of "
        "it timed out"
    ),
    409: gettext_lazy(
        "the receiver reported a conflict — it may have processed this event already; its "
        "answer below says more"
    ),
    410: gettext_lazy(
        "the receiver says this endpoint is gone, so the webhook was disabled — update the URL "
        "(or remove the webhook), then re-enable it"
    ),
    413: gettext_lazy(
        "the body is too large for the receiver — raise its size limit, or send less with a "
        "custom webhook body"
    ),
    415: gettext_lazy(
        "the receiver does not accept this content type — switch the webhook between JSON and "
        "XML to what the receiver expects"
    ),
    422: gettext_lazy(
        "the receiver could not process the body — check that its fields match what the "
        "receiver expects (a custom webhook body can reshape it) and that it verifies the "
        "signature with the current signing secret"
    ),
    429: gettext_lazy(
        "the receiver is rate-limiting this webhook — if it persists, ask the receiver's "
        "operator for a higher limit"
    ),
    500: gettext_lazy(
        "the receiver failed while handling the request (an error on its side) — check the "
        "receiver's logs"
    ),
    501: gettext_lazy("the receiver does not implement POST at this URL — check the webhook URL"),
    502: gettext_lazy(
        "a proxy in front of the receiver got no valid answer from it — the receiver is down "
        "or crashing"
    ),
    503: gettext_lazy("the receiver is unavailable (down for maintenance or overloaded)"),
    504: gettext_lazy(
        "a proxy in front of the receiver timed out waiting for it — the receiver is too slow; "
        "have it answer first and do its work afterwards"
    ),
}

# What the automatic retries do about a status, said only for a delivery that is retried.
_RETRY_CLAUSE: dict[int, Promise] = {
    408: gettext_lazy("retries continue automatically"),
    429: gettext_lazy("retries wait as long as its Retry-After asks"),
    500: gettext_lazy("retries continue automatically"),
    502: gettext_lazy("retries continue automatically"),
    503: gettext_lazy("retries continue automatically, honouring its Retry-After"),
}

_KIND: dict[str, Promise] = {
    ErrorKind.REDIRECT: gettext_lazy(
        "The receiver answered with a redirect, which webhooks never follow — use the final URL "
        "it points to (often https:// instead of http://, or with a trailing slash)."
    ),
    ErrorKind.TIMEOUT: gettext_lazy(
        "No complete answer within %(timeout)s seconds — the receiver is too slow; have it "
        "answer 2xx at once and do its work afterwards."
    ),
    ErrorKind.CONNECTION: gettext_lazy(
        "The connection was refused or cut — check the URL's host and port, and that the "
        "receiver is running and reachable from the internet."
    ),
    ErrorKind.DNS: gettext_lazy(
        "The URL's host name does not resolve — check its spelling and the domain's DNS records."
    ),
    ErrorKind.TLS: gettext_lazy(
        "The secure (https) connection failed — the receiver's certificate is invalid, expired, "
        "self-signed or for another host name; fix the certificate on the receiver."
    ),
    ErrorKind.BLOCKED: gettext_lazy(
        "The URL leads to a private, local or reserved address, where webhooks are never sent — "
        "use the receiver's public address."
    ),
    ErrorKind.INVALID_URL: gettext_lazy("The webhook URL is not a valid http(s) URL — correct it."),
    ErrorKind.RESPONSE: gettext_lazy(
        "The receiver's answer was not valid HTTP — check the server or proxy software in front "
        "of the endpoint."
    ),
    ErrorKind.INTERRUPTED: gettext_lazy(
        "The attempt was interrupted (the sending worker stopped) before it finished; it was "
        "retried automatically — nothing to do."
    ),
    ErrorKind.DISABLED: gettext_lazy(
        "The webhook is disabled, so nothing was sent — fix the receiver, re-enable the webhook, "
        "then send this delivery again (or recover every failed one)."
    ),
    ErrorKind.TEMPLATE: gettext_lazy(
        "The webhook body could not be rendered for this event, so nothing was sent — fix the "
        "Webhook Body (the preview shows the result), then send it again."
    ),
    ErrorKind.CONFIGURATION: gettext_lazy(
        "A setting of this webhook cannot be used (a secret the platform's keys cannot read, or "
        "a custom header no HTTP request can carry), so nothing was sent — rotate the signing "
        "secret, re-enter the password or the header the error names, or ask the platform's "
        "operators."
    ),
    ErrorKind.INTERNAL: gettext_lazy(
        "An unexpected error on the platform stopped the attempt — retrigger it later; if it "
        "happens again, tell the platform's operators."
    ),
}


def _redirected(status: int) -> str:
    return _("%(label)s: %(value)s") % {
        "label": status,
        "value": _lower_first(str(_KIND[ErrorKind.REDIRECT])),
    }


def failure_explain(
    *, error_kind: str, status: int | None, timeout_seconds: float = 15, retried: bool = True
) -> str:
    """One sentence on what went wrong and what to do, for an attempt's error kind and HTTP
    status; empty for a success (``error_kind`` empty and a 2xx or no status).

    ``retried`` False (a Send Test, a manual attempt) leaves out what automatic retries do.
    """
    if error_kind == ErrorKind.HTTP_STATUS or (not error_kind and status and status >= 300):
        if status is None:
            return _("The receiver answered with an error status.")
        if status in _STATUS:
            clause = _RETRY_CLAUSE.get(status) if retried else None
            if clause:
                return _("%(status)s: %(reason)s; %(clause)s.") % {
                    "status": status,
                    "reason": _STATUS[status],
                    "clause": clause,
                }
            return _("%(status)s: %(reason)s.") % {"status": status, "reason": _STATUS[status]}
        if 300 <= status < 400:
            return _redirected(status)
        if 400 <= status < 500:
            return _("%(label)s: %(value)s") % {
                "label": status,
                "value": _(
                    "the receiver refused the request — its answer below usually says why; fix "
                    "that on the receiver or in the webhook's settings."
                ),
            }
        text = _("the receiver had an error on its side — check the receiver's logs")
        if retried:
            return _("%(status)s: %(reason)s; %(clause)s.") % {
                "status": status,
                "reason": text,
                "clause": _("retries continue automatically"),
            }
        return _("%(status)s: %(reason)s.") % {"status": status, "reason": text}
    if error_kind == ErrorKind.REDIRECT and status:
        return _redirected(status)
    if error_kind in _KIND:
        return (
            str(_KIND[error_kind]) % {"timeout": f"{timeout_seconds:g}"}
            if error_kind == (ErrorKind.TIMEOUT)
            else str(_KIND[error_kind])
        )
    if error_kind:
        return _("The attempt failed; the error below has the details.")
    return ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
