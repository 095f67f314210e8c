"""What an attempt keeps of its request and answer: every known secret of the webhook removed.

The basic-auth password (and ``user:password`` in base64), the values of secret custom headers
and of the URL's query string never reach the attempt log, in whatever form a receiver echoes
them back (``webhook_engine.redaction``). ``record._attempt_build`` calls ``attempt_redact`` for
every attempt row, Send Test included, so the database, the API and every admin page only ever
hold the redacted text.
"""

from __future__ import annotations

from dataclasses import dataclass

from subscriptions.models import Subscription
from subscriptions.selectors import subscription_secret_values
from webhook_engine.redaction import headers_redact, text_redact, url_redact
from webhook_engine.transport import TransportResult

from .models import DeliveryAttempt

# "[redacted]" is longer than the mask a stored URL's query values read as: a URL that fits its
# column masked can outgrow the attempt's once redacted, and a row that cannot be written would
# leave its delivery to be sent again and again.
REQUEST_URL_MAX_CHARACTERS = DeliveryAttempt._meta.get_field("request_url").max_length or 2000


def request_url_capped(url: str) -> str:
    """The URL as the attempt log can hold it: cut, with an ellipsis, past the column's length."""
    if len(url) <= REQUEST_URL_MAX_CHARACTERS:
        return url
    return url[: REQUEST_URL_MAX_CHARACTERS - 1] + "…"


@dataclass(frozen=True)
class RedactedAttempt:
    request_url: str
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    response_body: str
    error_message: str


def attempt_redact(*, subscription: Subscription, result: TransportResult) -> RedactedAttempt:
    """The parts of an attempt that are stored, with the webhook's secrets replaced by
    ``[redacted]``: the URL's query values, the credential headers sent, and every secret in the
    headers sent, the answer's headers and body, and the error message."""
    secrets = subscription_secret_values(subscription=subscription)
    return RedactedAttempt(
        request_url=request_url_capped(url_redact(subscription.url, secrets)),
        request_headers=headers_redact(result.request_headers, secrets),
        response_headers=headers_redact(result.headers, secrets, by_name=False),
        response_body=text_redact(
            result.body.decode("utf-8", errors="replace"),
            secrets,
            truncated=result.body_truncated,
        ),
        error_message=text_redact(result.error_message, secrets),
    )
