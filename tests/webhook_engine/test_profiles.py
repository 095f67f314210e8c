"""Delivery profiles in the engine: the registry, the bodies' wire format, the headers."""

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from standardwebhooks.webhooks import Webhook

from events.catalog import EVENT_TYPES
from webhook_engine.bodies import BodyTemplateError
from webhook_engine.envelope import envelope_build, json_number, json_stringify
from webhook_engine.render import render
from webhook_engine.signing import ecdsa_key_load, ecdsa_public_key_pem
from webhook_engine.vendors import (
    PROFILES,
    SEED_EVENT_NAMES,
    SigningKeyMissing,
    profile_body,
    profile_headers,
    vendor_type_name,
)
from webhook_engine.vendors.mapping import spec_rows

CATALOG = {entry["key"]: entry for entry in EVENT_TYPES}
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
# What a JavaScript receiver gets from JSON.stringify(JSON.parse(body)).
NODE_RESTRINGIFY = (
    "process.stdout.write(JSON.stringify(JSON.parse(require('fs').readFileSync(0, 'utf8'))))"
)
ECDSA_KEY = ecdsa_key_load(base64.b64encode(hashlib.sha256(b"test key").digest()).decode())


def _envelope(event_type, data=None):
    return envelope_build(
        event_id="4f9c2a8e-5b1d-4e0f-9a7c-3d2e1f0a9b8c",
        event_type=event_type,
        school_id=7,
        school_slug="lycee",
        occurred_at=dt.datetime(2026, 3, 26, 8, 0, 0, 250_000, tzinfo=dt.UTC),
        data=CATALOG[event_type]["sample_payload"] if data is None else data,
        tz=ZoneInfo("Europe/Paris"),
    )


def _headers(profile, body=b'{"type":"x","appId":null}', **keys):
    return profile_headers(
        profile,
        body=body,
        content_type="application/json",
        msg_id="msg_1",
        timestamp=1_700_000_000,
        event_type="course.created",
        attempt=2,
        school_id=7,
        school_language="fr",
        webhook_id="5f0c7d0e-0000-4000-8000-000000000001",
        secrets=[SECRET],
        **keys,
    )


@pytest.mark.parametrize("profile", [key for key in PROFILES if key != "standard"])
def test_a_vendor_profile_sends_exactly_the_vendors_event_types(profile):
    vendor = PROFILES[profile]
    named = {row.key for row in SEED_EVENT_NAMES if row.vendor == vendor.vendor}

    assert vendor.events is not None
    assert set(vendor.events) == named
    assert set(vendor.events) <= set(CATALOG)


@pytest.mark.parametrize(
    ("profile", "key"),
    [
        (profile, key)
        for profile, vendor in PROFILES.items()
        if vendor.events is not None
        for key in sorted(vendor.events)
    ],
)
def test_every_sample_renders_under_every_profile_that_sends_its_type(profile, key):
    body, content_type = render(_envelope(key), content_type="json", profile=profile)

    assert content_type == "application/json"
    assert json.loads(body) == profile_body(profile, _envelope(key))
    assert spec_rows(PROFILES[profile].events[key])  # documented in docs/events.md


def test_a_profile_refuses_an_event_type_its_vendor_does_not_have():
    with pytest.raises(BodyTemplateError) as raised:
        render(_envelope("student.signed"), content_type="json", profile="braincert")

    assert str(raised.value) == (
        "BrainCert has no event for student.signed; a webhook with the BrainCert profile "
        "receives only BrainCert's events."
    )


@pytest.mark.parametrize("profile", ["edusign", "edume", "edudip"])
def test_vendors_that_send_json_only_refuse_xml(profile):
    vendor = PROFILES[profile]
    key = sorted(vendor.events)[0]

    with pytest.raises(ValueError, match=f"{vendor.label} sends json only."):
        render(_envelope(key), content_type="xml", profile=profile)


def test_vendor_dates_are_written_as_the_vendor_writes_them():
    envelope = _envelope("student.signed")

    edusign = profile_body("edusign", envelope)
    braincert = profile_body("braincert", _envelope("course.created"))
    edume = profile_body("edume", _envelope("course.created"))

    assert edusign["course"]["START"] == "2026-03-26T08:00:00+01:00"  # the school's zone
    assert braincert["created_at"] == "2026-03-26T08:00:00.250Z"  # UTC, milliseconds
    assert braincert["payload"]["created_at"] == "2024-02-14T21:52:13.530Z"
    assert braincert["timestamp"] == 1774512000
    assert edume["timestamp"] == "2026-03-26T08:00:00.250Z"


def test_the_vendor_filter_never_makes_up_a_name():
    assert vendor_type_name("student.signed", "edusign") == "on_student_sign"
    assert vendor_type_name("webinar.created", "edusign") == "webinar.created"
    assert vendor_type_name("course.completed", "edume") == "course.completed"
    assert vendor_type_name("course_enrollment.created", "edume") == "learner.added"


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        -2.5,
        0.1,
        1e-5,
        1.5e-7,
        1e16,
        1e21,
        123456789.125,
        5e-324,
        1.7976931348623157e308,
        -0.0,
        42,
        10**17,
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value):
    done = subprocess.run(
        ["node", "-e", NODE_RESTRINGIFY],
        input=json.dumps(value).encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )

    assert json_number(value).encode() == done.stdout


def test_vendor_json_is_what_javascripts_stringify_writes_for_it():
    value = {
        "b": [1.0, {"x": None, "y": True}],
        "10": "ten",
        "2": "two",
        "01": "not an index",
        "é\u2028": 'quote " backslash \\ tab \t nul \u0000 emoji \U0001f600',
        "nested": {"z": 0.00001, "a": -1e-7},
    }

    done = subprocess.run(
        ["node", "-e", NODE_RESTRINGIFY],
        input=json.dumps(value).encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )

    assert json_stringify(value) == done.stdout


def test_the_standard_headers_are_the_same_for_every_profile():
    for profile in PROFILES:
        headers = _headers(profile, ecdsa_key=ECDSA_KEY)

        assert {
            name: headers[name]
            for name in (
                "Content-Type",
                "webhook-id",
                "webhook-timestamp",
                "X-Webhook-Event",
                "X-Webhook-School",
                "X-Webhook-Lang",
                "X-Webhook-Attempt",
            )
        } == {
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": "1700000000",
            "X-Webhook-Event": "course.created",
            "X-Webhook-School": "7",
            "X-Webhook-Lang": "fr",
            "X-Webhook-Attempt": "2",
        }
        # Standard Webhooks' own library signs the same: v1 over {id}.{timestamp}.{body}.
        sent_at = dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
        expected = Webhook(SECRET).sign("msg_1", sent_at, '{"type":"x","appId":null}')
        assert headers["webhook-signature"] == expected


def test_the_edusign_headers_name_the_event_school_language_client_and_hmac():
    body = b'{"type":"on_course_created","appId":null,"courseId":"c-1"}'

    headers = _headers("edusign", body=body)

    assert {name: value for name, value in headers.items() if name.startswith("x-edusign-")} == {
        "x-edusign-webhook-type": "on_course_created",
        "x-edusign-school-id": "7",
        "x-edusign-app-id": "",
        "x-edusign-lang": "fr",
        "x-edusign-hmac": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "x-edusign-client-id": "5f0c7d0e-0000-4000-8000-000000000001",
    }


def test_the_edudip_headers_carry_an_ecdsa_signature_of_the_body():
    body = b'{"type":"webinar.created"}'

    headers = _headers("edudip", body=body, ecdsa_key=ECDSA_KEY)

    assert headers["X-Edudip-Signature-Algorithm"] == "SHA256"
    ECDSA_KEY.public_key().verify(
        base64.b64decode(headers["X-Edudip-Signature"]), body, ec.ECDSA(hashes.SHA256())
    )
    assert ecdsa_public_key_pem(ECDSA_KEY).startswith("-----BEGIN PUBLIC KEY-----\n")


def test_the_edudip_profile_without_the_platforms_key_refuses_to_sign():
    with pytest.raises(SigningKeyMissing, match="WEBHOOKS_ECDSA_KEY"):
        _headers("edudip")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "The ECDSA signing key is not valid base64."),
        (base64.b64encode(b"\xff" * 32).decode(), "is not a valid P-256 private number"),
        (base64.b64encode(b"short").decode(), "neither 32 bytes nor a DER PKCS#8"),
    ],
)
def test_a_malformed_ecdsa_key_is_refused_with_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        ecdsa_key_load(value)
