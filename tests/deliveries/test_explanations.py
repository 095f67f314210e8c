"""Plain-language explanations of failed attempts (a pure function)."""

import pytest

from deliveries.explanations import failure_explain
from webhook_engine.errors import ErrorKind


@pytest.mark.parametrize(
    ("error_kind", "status", "starts_with", "mentions"),
    [
        (
            ErrorKind.HTTP_STATUS,
            400,
            "400: the receiver refused the request as malformed",
            "JSON or XML",
        ),
        (
            ErrorKind.HTTP_STATUS,
            401,
            "401: the receiver rejected the credentials",
            "basic-auth username and password",
        ),
        (ErrorKind.HTTP_STATUS, 403, "403: the receiver refused access", "custom header"),
        (ErrorKind.HTTP_STATUS, 404, "404: nothing answers at this URL", "path"),
        (ErrorKind.HTTP_STATUS, 410, "410: the receiver says this endpoint is gone", "re-enable"),
        (
            ErrorKind.HTTP_STATUS,
            413,
            "413: the body is too large for the receiver",
            "custom webhook body",
        ),
        (
            ErrorKind.HTTP_STATUS,
            429,
            "429: the receiver is rate-limiting this webhook",
            "Retry-After",
        ),
        (ErrorKind.HTTP_STATUS, 500, "500: the receiver failed while handling the request", "logs"),
        (ErrorKind.HTTP_STATUS, 502, "502: a proxy in front of the receiver", "down"),
        (ErrorKind.HTTP_STATUS, 503, "503: the receiver is unavailable", "Retry-After"),
        (ErrorKind.HTTP_STATUS, 504, "504: a proxy in front of the receiver timed out", "too slow"),
        (ErrorKind.HTTP_STATUS, 418, "418: the receiver refused the request", "its answer below"),
        (ErrorKind.HTTP_STATUS, 599, "599: the receiver had an error on its side", "retries"),
        (ErrorKind.REDIRECT, 301, "301: the receiver answered with a redirect", "https://"),
        (ErrorKind.TIMEOUT, None, "No complete answer within 15 seconds", "answer 2xx at once"),
        (ErrorKind.CONNECTION, None, "The connection was refused or cut", "host and port"),
        (ErrorKind.DNS, None, "The URL's host name does not resolve", "DNS records"),
        (ErrorKind.TLS, None, "The secure (https) connection failed", "certificate"),
        (
            ErrorKind.BLOCKED,
            None,
            "The URL leads to a private, local or reserved address",
            "public",
        ),
        (ErrorKind.INVALID_URL, None, "The webhook URL is not a valid", "correct it"),
        (ErrorKind.RESPONSE, None, "The receiver's answer was not valid HTTP", "proxy"),
        (ErrorKind.INTERRUPTED, None, "The attempt was interrupted", "nothing to do"),
        (ErrorKind.DISABLED, None, "The webhook is disabled, so nothing was sent", "re-enable"),
        (ErrorKind.TEMPLATE, None, "The webhook body could not be rendered", "preview"),
        (ErrorKind.CONFIGURATION, None, "A setting of this webhook cannot be used", "header"),
        (ErrorKind.INTERNAL, None, "An unexpected error on the platform", "retrigger"),
    ],
)
def test_each_failure_is_explained_with_what_to_do(error_kind, status, starts_with, mentions):
    explanation = failure_explain(error_kind=error_kind, status=status)

    assert explanation.startswith(starts_with)
    assert mentions in explanation
    assert explanation.endswith(".")


def test_the_timeout_sentence_names_the_configured_deadline():
    assert failure_explain(error_kind=ErrorKind.TIMEOUT, status=None, timeout_seconds=2).startswith(
        "No complete answer within 2 seconds"
    )


def test_a_success_needs_no_explanation():
    assert failure_explain(error_kind=ErrorKind.NONE, status=200) == ""
    assert failure_explain(error_kind=ErrorKind.NONE, status=None) == ""


def test_the_401_sentence_is_the_one_a_school_admin_reads():
    assert failure_explain(error_kind=ErrorKind.HTTP_STATUS, status=401) == (
        "401: the receiver rejected the credentials — check the basic-auth username and "
        "password, or the token it expects in a custom header."
    )
