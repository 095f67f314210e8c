import http.client

import pytest

from webhook_engine.headers import (
    header_name_looks_secret,
    header_name_problem,
    header_value_problem,
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("X-Tenant", None),
        ("x_custom.v2!", None),
        ("", "A header name cannot be empty."),
        (
            "X Token",
            "'X Token' is not a valid header name: it contains ' ' (U+0020). Use letters, "
            "digits and !#$%&'*+-.^_`|~ (RFC 9110, 5.6.2).",
        ),
        (
            "X-Tök",
            "'X-Tök' is not a valid header name: it contains 'ö' (U+00F6). Use letters, "
            "digits and !#$%&'*+-.^_`|~ (RFC 9110, 5.6.2).",
        ),
        (
            "X" * 10_000,
            f"The header name {'X' * 30 + '…'!r} has 10000 characters; the limit is 100.",
        ),
    ],
)
def test_header_names_are_rfc_9110_tokens_of_a_sane_length(name, problem):
    assert header_name_problem(name) == problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc-123 =/+", None),
        ("Grüße", None),  # Latin-1: obs-text, sent as is
        ("a\tb", None),
        ("", None),
        (
            "日本語",
            "The value of X-Token contains '日' (U+65E5), which an HTTP header cannot carry "
            "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
            "base64 or percent-encoding.",
        ),
        (
            "a\u2028b",
            "The value of X-Token contains U+2028, which an HTTP header cannot carry "
            "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
            "base64 or percent-encoding.",
        ),
        ("a\nb", "The value of X-Token cannot contain line breaks."),
        (
            "a\x00b",
            "The value of X-Token contains U+0000, which an HTTP header cannot carry "
            "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
            "base64 or percent-encoding.",
        ),
        (" padded", "The value of X-Token starts or ends with a space; remove it."),
        ("x" * 1001, "The value of X-Token has 1001 characters; the limit is 1000."),
    ],
)
def test_header_values_are_what_http_can_carry_with_the_reason(value, problem):
    assert header_value_problem("X-Token", value) == problem


def test_every_value_accepted_can_be_written_by_the_http_client_and_refused_ones_cannot():
    accepted = [
        "".join(map(chr, range(0x21, 0x7F))),
        "".join(map(chr, range(0xA1, 0x100))),
        "a\tb c",
    ]
    for value in accepted:
        assert header_value_problem("X-Test", value) is None
        connection = http.client.HTTPConnection("127.0.0.1")  # buffers; never connects here
        connection.putrequest("POST", "/")
        connection.putheader("X-Test", value)  # raises for what HTTP/1.1 cannot carry
    for value in ["日本語", "a\u2028b", "a\nb"]:
        assert header_value_problem("X-Test", value) is not None
        connection = http.client.HTTPConnection("127.0.0.1")
        connection.putrequest("POST", "/")
        with pytest.raises((UnicodeEncodeError, ValueError)):
            connection.putheader("X-Test", value)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("X-Receiver-Sig", True),
        ("X-Hub-Signature-256", True),
        ("X-Key", True),
        ("Session-Id", True),
        ("X-Tenant", False),
        ("X-Monkey", False),
        ("X-Signal", False),
    ],
)
def test_names_that_say_they_carry_a_credential(name, secret):
    assert header_name_looks_secret(name) is secret
