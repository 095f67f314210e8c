"""Receivers written from the seed documents alone (seeds/000-004), in this test's code, running
on 127.0.0.1 and checking each real delivery as the document tells a receiver to, answering as
the document's own example does (401 for a bad signature). A delivery counts as received only
when the receiver answered 2xx; a forged copy of it (one byte of the body changed, the same
headers) sent to the same receiver must be refused.

- Edusign (001, "Example Verification Process"): HMAC-SHA256 of the message with the app's
  Client Secret, compared with ``x-edusign-hmac``; the event type in ``x-edusign-webhook-type``
  and in the body; dates "in your school's timezone, not UTC", "formatted as ISO-8601".
- edudip (004): the public key downloaded from the platform; the payload hashed with the
  algorithm ``X-Edudip-Signature-Algorithm`` names; the signature checked against that hash
  with the public key. Retries 2 s, 4 s, 8 s, 16 s apart, the 17th delivery after 24 hours.
- BrainCert (002): basic authentication with the username and password set on the webhook,
  the content type chosen ("application/json" or "application/xml").
- eduMe (003): each body valid against the document's JSON schema of its event.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.db.models import F
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import deliveries_attempt
from deliveries.services.config import retry_policy
from subscriptions.crypto import secret_encrypt
from tests.schools.factories import SchoolFactory
from tests.vendors.golden import vendor_delivery, vendor_samples
from tests.vendors.test_edume import CASES as EDUME_CASES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("catalog")]

# A check takes the request's headers (lower-case names) and raw body; it answers the status
# and the body the receiver sends back.
Check = Callable[[dict[str, str], bytes], tuple[int, bytes]]


class DocumentedReceiver:
    """An HTTP receiver on 127.0.0.1 that runs ``check`` on every POST and keeps the answers."""

    def __init__(self, check: Check) -> None:
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer = check(headers, body)
                receiver.answers.append(status)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        """Send a request as a forger would (the given headers and body); the status."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def documented():
    started: list[DocumentedReceiver] = []

    def start(check: Check) -> DocumentedReceiver:
        started.append(DocumentedReceiver(check))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


def _deliver(**delivery) -> tuple[Delivery, bytes, dict[str, str]]:
    """Build the delivery, make its attempt; the stored delivery, its body and the headers sent
    (as the attempt log has them, secrets hidden)."""
    built = vendor_delivery(**delivery)
    [attempt] = deliveries_attempt(delivery_ids=[built.pk])
    return Delivery.objects.get(pk=built.pk), bytes(built.body), attempt.request_headers


def _forged(body: bytes) -> bytes:
    changed = body.replace(b":", b": ", 1)
    assert changed != body
    return changed


DENIED = (401, b'{"error": "Invalid signature"}')
OK = (200, b'{"ok": true}')

# --- Edusign ---------------------------------------------------------------------------------

CLIENT_SECRET = "whsec_Y2xpZW50LXNlY3JldC1vZi10aGUtZWR1c2lnbi1hcHA="
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def _edusign_receiver(zone: str) -> Check:
    def check(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        # "Retrieve the HMAC signature from the x-edusign-hmac header, use your app's Client
        # Secret to generate your own signature, compare both signatures."
        signature = headers.get("x-edusign-hmac", "")
        mine = hmac.new(CLIENT_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mine, signature):
            return DENIED
        payload = json.loads(body)
        if payload["type"] != headers["x-edusign-webhook-type"]:
            return 400, b'{"error": "type"}'
        # "All date and time fields are automatically converted to match your school's
        # timezone", ISO-8601: each one's offset is the school's at that instant.
        for text in _strings(payload):
            if ISO_WITH_OFFSET.match(text):
                moment = dt.datetime.fromisoformat(text)
                if moment.utcoffset() != moment.astimezone(ZoneInfo(zone)).utcoffset():
                    return 400, f'{{"error": "not in the school zone: {text}"}}'.encode()
        return OK

    return check


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (
            "student.signed",
            {
                "student": {"id": "s-1", "first_name": "Zoë", "last_name": "Lefèvre"},
                "course": {
                    "id": "c-1",
                    "name": "Maths",
                    # Winter and summer time around the change of 29 March 2026 in Paris.
                    "start": "2026-03-28T08:00:00Z",
                    "end": "2026-03-29T08:00:00Z",
                },
                "signature": {"state": True, "signed_at": "2026-03-29T01:30:00.250Z"},
            },
        ),
        ("course.created", {"course": {"id": "course-uuid"}}),
    ],
)
def test_an_edusign_receiver_from_the_document_accepts_deliveries_and_refuses_forgeries(
    event_type, data, documented
):
    zone = "Europe/Paris"
    receiver = documented(_edusign_receiver(zone))

    delivery, body, _ = _deliver(
        school=SchoolFactory(timezone=zone, language="fr"),
        profile="edusign",
        event_type=event_type,
        data=data,
        occurred_at=timezone.now().isoformat(),
        url=receiver.url,
        secret=CLIENT_SECRET,
    )

    assert receiver.answers == [200]
    assert delivery.status == DeliveryStatus.DELIVERED
    sent = {
        "Content-Type": "application/json",
        "x-edusign-webhook-type": json.loads(body)["type"],
        "x-edusign-hmac": hmac.new(CLIENT_SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    assert receiver.post(body, sent) == 200
    assert receiver.post(_forged(body), sent) == 401
    assert receiver.post(body, {**sent, "x-edusign-hmac": sent["x-edusign-hmac"].upper()}) == 401


# --- edudip ----------------------------------------------------------------------------------


def _edudip_receiver(public_key_pem: bytes) -> Check:
    # "Load the public key that belongs to our private key. We provide this public key."
    public_key = load_pem_public_key(public_key_pem)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)

    def check(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        # "Hash the payload of the webhook with the algorithm from the
        # X-Edudip-Signature-Algorithm header to obtain the payload hash."
        algorithm = headers.get("x-edudip-signature-algorithm", "")
        digest = hashlib.new(algorithm, body).digest()
        chosen = getattr(hashes, algorithm.upper())()
        # "Use the public key to compare the received signature (X-Edudip-Signature) with the
        # hashed payload."
        signature = base64.b64decode(headers.get("x-edudip-signature", ""))
        try:
            public_key.verify(signature, digest, ec.ECDSA(utils.Prehashed(chosen)))
        except InvalidSignature:
            return DENIED
        json.loads(body)  # "Webhooks are sent JSON serialized."
        return OK

    return check


def test_an_edudip_receiver_from_the_document_accepts_deliveries_and_refuses_forgeries(
    documented, live_server
):
    # "Click here to download the public key": a plain download, no login.
    with urllib.request.urlopen(
        f"{live_server.url}/.well-known/webhooks/ecdsa-public-key.pem", timeout=10
    ) as response:
        receiver = documented(_edudip_receiver(response.read()))

    delivery, body, sent = _deliver(
        school=SchoolFactory(),
        profile="edudip",
        event_type="webinar.created",
        data={"webinar": {"id": 48213, "title": "Webhooks für Schulen"}},
        occurred_at=timezone.now().isoformat(),
        url=receiver.url,
    )

    assert receiver.answers == [200]
    assert delivery.status == DeliveryStatus.DELIVERED
    assert sent["X-Edudip-Signature-Algorithm"] == "SHA256"
    headers = {
        name: sent[name]
        for name in ("Content-Type", "X-Edudip-Signature-Algorithm", "X-Edudip-Signature")
    }
    assert receiver.post(body, headers) == 200
    assert receiver.post(_forged(body), headers) == 401


def test_edudip_retries_two_four_eight_and_sixteen_seconds_apart_and_the_17th_after_24_hours(
    documented, settings
):
    # The product's defaults (.env.example); the suite's settings shrink the schedule.
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 2.0
    settings.WEBHOOKS_RETRY_MAX_ATTEMPTS = 17
    settings.WEBHOOKS_RETRY_WINDOW_SECONDS = 86400.0
    settings.WEBHOOKS_RETRY_JITTER = 0.1
    receiver = documented(lambda headers, body: (500, b"{}"))
    delivery = vendor_delivery(
        school=SchoolFactory(),
        profile="edudip",
        event_type="webinar.created",
        data={"webinar": {"id": 1, "title": "Retries"}},
        occurred_at=timezone.now().isoformat(),
        url=receiver.url,
    )
    gaps = []

    for _ in range(4):
        # Time passes until the attempt is due: the delivery's times move back instead.
        early = Delivery.objects.get(pk=delivery.pk).next_attempt_at - timezone.now()
        Delivery.objects.filter(pk=delivery.pk).update(
            created_at=F("created_at") - early, next_attempt_at=F("next_attempt_at") - early
        )
        deliveries_attempt(delivery_ids=[delivery.pk])
        made = Delivery.objects.get(pk=delivery.pk)
        gaps.append((made.next_attempt_at - made.last_attempt_at).total_seconds())

    # "First delivery: immediately. Second: after two seconds. Third: after four seconds.
    # Fourth: after eight seconds. Fifth: after 16 seconds" (up to 10 % later: jitter).
    assert [
        expected <= gap <= expected * 1.1 + 0.5
        for gap, expected in zip(gaps, [2, 4, 8, 16], strict=True)
    ] == [True] * 4, gaps
    assert receiver.answers == [500, 500, 500, 500]
    # "17th delivery: After 24 hours", and no 18th.
    policy = retry_policy()
    assert (policy.max_attempts, policy.offset_seconds(17)) == (17, 24 * 3600)


# --- BrainCert -------------------------------------------------------------------------------

USERNAME, PASSWORD = "lms-hook", "pässwörd:1"


def _braincert_receiver(content_type: str) -> Check:
    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()

    def check(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        # "Basic Authentication: ... provide the username and password required."
        if not hmac.compare_digest(headers.get("authorization", ""), expected):
            return 401, b'{"error": "unauthorized"}'
        if headers.get("content-type") != content_type:
            return 415, b"{}"
        if content_type == "application/xml":
            root = ET.fromstring(body)  # noqa: S314 - our own delivery, in a test
            keys = [child.tag for child in root]
        else:
            keys = list(json.loads(body))
        if keys[:3] != ["id", "resource", "action"] or "payload" not in keys:
            return 400, b"{}"
        return OK

    return check


@pytest.mark.parametrize("content_type", ["json", "xml"])
def test_a_braincert_receiver_with_basic_authentication_accepts_deliveries(
    content_type, documented
):
    header = f"application/{content_type}"
    receiver = documented(_braincert_receiver(header))
    webhook = {
        "school": SchoolFactory(),
        "profile": "braincert",
        "event_type": "course.completed",
        "data": {
            "course": {"id": 12345, "name": "Example Course Title"},
            "user": {"id": 67890, "first_name": "John", "last_name": "Doe"},
            "completed_at": "2024-02-14T12:00:00Z",
        },
        "occurred_at": timezone.now().isoformat(),
        "url": receiver.url,
        "content_type": content_type,
        "basic_auth_enabled": True,
        "basic_auth_username": USERNAME,
    }

    delivered, _, _ = _deliver(**webhook, basic_auth_password_encrypted=secret_encrypt(PASSWORD))
    refused, _, _ = _deliver(
        **webhook, basic_auth_password_encrypted=secret_encrypt("another password")
    )

    assert delivered.status == DeliveryStatus.DELIVERED
    assert refused.status == DeliveryStatus.PENDING  # retried later
    assert refused.last_response_status == 401
    assert receiver.answers == [200, 401]


# --- eduMe -----------------------------------------------------------------------------------

EDUME = {(event["name"], event["subtype"]): event for event in vendor_samples("edume")["events"]}


@pytest.mark.parametrize(("name", "subtype"), sorted(EDUME_CASES))
def test_an_edume_receiver_validating_the_documents_json_schema_accepts_deliveries(
    name, subtype, documented
):
    schema = json.loads(json.dumps(EDUME[(name, subtype)]["json_schema"]))
    if name == "learner.course.completed":
        # The document's schema says "course.complete", its sample "course.completed": the
        # profile sends the sample's, what a receiver tested against eduMe's deliveries saw.
        schema["properties"]["type"] = {"const": "course.completed"}

    def check(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            jsonschema.validate(json.loads(body), schema)
        except jsonschema.ValidationError as exc:
            return 422, json.dumps({"error": exc.message}).encode()
        return OK

    receiver = documented(check)
    event_type, data = EDUME_CASES[(name, subtype)]

    delivery, body, _ = _deliver(
        school=SchoolFactory(timezone="America/New_York"),
        profile="edume",
        event_type=event_type,
        data=data,
        occurred_at=timezone.now().isoformat(),
        url=receiver.url,
    )

    assert (delivery.status, delivery.last_error) == (DeliveryStatus.DELIVERED, "")
    assert receiver.answers == [200]
    assert json.loads(body)["timestamp"].endswith("Z")  # UTC, as eduMe's samples
