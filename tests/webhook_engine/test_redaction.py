import base64

from hypothesis import given
from hypothesis import strategies as st

from webhook_engine.redaction import (
    REDACTED,
    headers_redact,
    secret_forms,
    text_redact,
    url_query_mask,
    url_query_secret,
    url_query_unmask,
    url_query_values,
    url_redact,
)


def test_every_form_an_echo_returns_a_secret_in_is_redacted():
    password = 'p@ss/wörd"+1'
    credentials = base64.b64encode(f"lms:{password}".encode()).decode()
    secrets = secret_forms([password, credentials, "abc"])  # "abc" is too short to hide
    echoed = (
        f'{{"auth": "Basic {credentials}", "raw": "{password}", '
        f'"json": "p@ss/w\\u00f6rd\\"+1", "query": "p%40ss%2Fw%C3%B6rd%22%2B1", '
        f'"form": "p%40ss%2Fw%C3%B6rd%22%2B1", "status": "abc"}}'
    )

    assert text_redact(echoed, secrets) == (
        '{"auth": "Basic [redacted]", "raw": "[redacted]", "json": "[redacted]", '
        '"query": "[redacted]", "form": "[redacted]", "status": "abc"}'
    )


def test_the_forms_other_echo_servers_write_a_secret_in_are_redacted_too():
    """PHP's json_encode writes / as \\/ (base64 credentials hold slashes), many encoders write
    percent-escapes in lower case, JavaScript's encodeURIComponent leaves !'()* as they are, and
    a debug page escapes HTML."""
    password = "Ab/c+d!e'f(g)*h&i<j?"
    credentials = base64.b64encode(f"lms:{password}".encode()).decode()
    assert credentials == "bG1zOkFiL2MrZCFlJ2YoZykqaCZpPGo/"
    secrets = secret_forms([password, credentials])
    echoes = [
        '{"raw": "Ab\\/c+d!e\'f(g)*h&i<j?"}',  # PHP's json_encode
        '{"auth": "Basic bG1zOkFiL2MrZCFlJ2YoZykqaCZpPGo\\/"}',
        "q=Ab%2fc%2bd%21e%27f%28g%29%2ah%26i%3cj%3f",  # lower-case escapes
        "q=Ab%2Fc%2Bd!e'f(g)*h%26i%3Cj%3F",  # encodeURIComponent
        "<td>Ab/c+d!e&#x27;f(g)*h&amp;i&lt;j?</td>",  # html.escape
        "<td>Ab/c+d!e&#39;f(g)*h&amp;i&lt;j?</td>",  # Django's escape
    ]

    assert [text_redact(echoed, secrets) for echoed in echoes] == [
        '{"raw": "[redacted]"}',
        '{"auth": "Basic [redacted]"}',
        "q=[redacted]",
        "q=[redacted]",
        "<td>[redacted]</td>",
        "<td>[redacted]</td>",
    ]


def test_a_body_cut_in_the_middle_of_a_secret_loses_the_secrets_beginning_too():
    secrets = secret_forms(["tok-7f3a9c-very-long"])

    assert text_redact("echo: tok-7f3a9c-ve", secrets, truncated=True) == f"echo: {REDACTED}"
    assert text_redact("echo: tok-7f3a9c-ve", secrets) == "echo: tok-7f3a9c-ve"


def test_a_urls_query_values_are_redacted_and_its_names_kept():
    url = "https://hooks.example/in/s3cr3t-path?token=a%2Bb&team=x&flag&empty=#frag"

    assert url_query_values(url) == ["a%2Bb", "a+b", "x", "x"]
    assert url_redact(url, secret_forms(["s3cr3t-path"])) == (
        "https://hooks.example/in/[redacted]?token=[redacted]&team=[redacted]&flag&empty=#[redacted]"
    )
    assert url_redact("https://hooks.example/in") == "https://hooks.example/in"


def test_request_headers_lose_credentials_by_name_and_secrets_by_value_answers_keep_their_names():
    secrets = secret_forms(["k-123", "lycee-secret"])
    sent = {
        "Authorization": "Basic bG1zOnB3",
        "X-Api-Key": "k-123",
        "X-Receiver-Sig": "sig-value",
        "X-Tenant": "lycee",
        "X-Note": "with lycee-secret inside",
        "webhook-signature": "v1,abc",
    }
    answered = {"WWW-Authenticate": 'Basic realm="x"', "X-Echo": "k-123"}

    assert headers_redact(sent, secrets) == {
        "Authorization": REDACTED,
        "X-Api-Key": REDACTED,
        "X-Receiver-Sig": REDACTED,
        "X-Tenant": "lycee",
        "X-Note": f"with {REDACTED} inside",
        "webhook-signature": "v1,abc",
    }
    assert headers_redact(answered, secrets, by_name=False) == {
        "WWW-Authenticate": 'Basic realm="x"',
        "X-Echo": REDACTED,
    }


def test_a_urls_query_values_are_masked_and_the_mask_given_back_keeps_each_value():
    stored = "https://h.example/in?token=a%2Bb&team=x&team=y&flag#top"
    mask = "••••••••"

    masked = url_query_mask(stored, mask)
    kept, missing = url_query_unmask(
        f"https://other.example/in?team={mask}&team=%E2%80%A2%E2%80%A2%E2%80%A2%E2%80%A2"
        f"%E2%80%A2%E2%80%A2%E2%80%A2%E2%80%A2&token=new&key={mask}",
        stored,
        mask,
    )

    assert masked == f"https://h.example/in?token={mask}&team={mask}&team={mask}&flag#top"
    assert url_query_secret(stored)
    assert not url_query_secret("https://h.example/in?flag&empty=")
    assert kept == f"https://other.example/in?team=x&team=y&token=new&key={mask}"
    assert missing == ["key"]


def test_secrets_that_overlap_in_an_echo_are_hidden_whole_not_in_part():
    first, second = "abcd1234", "1234wxyz"  # the end of one is the start of the other
    secrets = secret_forms([first, second, "tok-tok-"])

    assert text_redact("echo abcd1234wxyz.", secrets) == f"echo {REDACTED}."
    assert text_redact("echo tok-tok-tok-.", secrets) == f"echo {REDACTED}."  # overlaps itself
    assert text_redact("abcd1234 1234wxyz", secrets) == f"{REDACTED} {REDACTED}"


def test_a_cut_body_ending_inside_overlapping_secrets_keeps_none_of_them():
    secrets = secret_forms(["abcd1234", "1234wxyz"])

    assert text_redact("echo abcd1234wx", secrets, truncated=True) == f"echo {REDACTED}"


@given(
    st.lists(st.text(alphabet="ab", min_size=4, max_size=8), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7)), min_size=1, max_size=6),
    st.text(alphabet="xy ", max_size=5),
    st.text(alphabet="xy ", max_size=5),
)
def test_no_character_of_any_secret_occurrence_survives(secrets, chain, before, after):
    # The text between the pads is made only of secret occurrences, overlapping where they can.
    middle = ""
    for index, overlap in chain:
        secret = secrets[index % len(secrets)]
        shared = min(overlap, len(secret) - 1)
        middle += secret[shared:] if middle.endswith(secret[:shared]) else secret

    redacted = text_redact(before + middle + after, secret_forms(secrets))

    assert redacted.replace(REDACTED, "") == before + after
