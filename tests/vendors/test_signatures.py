"""Receivers written only from the vendors' own documents (seeds 000/001 for Edusign, 004 for
edudip), in this test's code, verify what the Edusign and edudip profiles send.

Edusign: "When Edusign sends a webhook, it creates a unique HMAC signature using your app's
Client Secret [and] the webhook message content. The signature is sent in the x-edusign-hmac
header. Your application should: retrieve the HMAC signature from the x-edusign-hmac header,
use your app's Client Secret to generate your own signature, compare both signatures." Its
receivers (Edusign's app boilerplate) sign ``JSON.stringify(req.body)`` and compare hex digests.

edudip: "Load the public key that belongs to our private key. We provide this public key. Hash
the payload of the webhook with the algorithm from the X-Edudip-Signature-Algorithm header to
obtain the payload hash. Use the public key to compare the received signature
(X-Edudip-Signature) with the hashed payload."
"""

import base64
import hashlib
import hmac
import json
import subprocess
import urllib.request

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from deliveries.models import DeliveryAttempt
from deliveries.services import deliveries_attempt
from tests.schools.factories import SchoolFactory
from tests.vendors.golden import vendor_delivery, vendor_samples

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("catalog")]

CLIENT_SECRET = "whsec_ZWR1c2lnbi1jbGllbnQtc2VjcmV0LWZvci10ZXN0cyE="

# A receiver of Edusign's, as its documentation and its app boilerplate have it: Express parses
# the body, the HMAC is over JSON.stringify of it, keyed with the Client Secret, in hex.
EDUSIGN_RECEIVER = """
const crypto = require("node:crypto");
const request = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const reqBody = JSON.parse(Buffer.from(request.body, "base64").toString("utf8"));
const signature = request.headers["x-edusign-hmac"];
const mine = crypto.createHmac("sha256", request.clientSecret)
  .update(JSON.stringify(reqBody)).digest("hex");
process.stdout.write(JSON.stringify({valid: mine === signature, type: reqBody.type}));
"""


def _send(receiver, path: str, **delivery) -> tuple[bytes, dict[str, str], dict[str, str]]:
    built = vendor_delivery(url=receiver.url(path), **delivery)
    [attempt] = deliveries_attempt(delivery_ids=[built.pk])
    [received] = receiver.received(path)
    sent = DeliveryAttempt.objects.get(pk=attempt.pk).request_headers
    return received.body, received.headers, sent


EDUSIGN_EVENTS = [
    (
        "student.signed",
        {
            "student": {
                "id": "student-42",
                "first_name": "Zoë",
                "last_name": "Lefèvre-Ngụyễn",
                "email": "zoe@example.org",
                "external_id": "SIS-1",
            },
            "course": {
                "id": "course-4711",
                "name": 'Maths "avancées" / 2ᵉ année — 数学',
                "start": "2026-03-26T07:00:00.125Z",
                "end": "2026-03-26T10:00:00Z",
                "external_id": None,
            },
            "signature": {"state": True, "signed_at": "2026-03-26T07:15:00Z"},
        },
    ),
    (
        "app_parameters.updated",
        {
            "app": {"id": "app-7"},
            # Numbers and keys as JavaScript re-orders and re-writes them.
            "parameters": {"b": 1.0, "10": 0.00001, "2": [1e16, -0.0], "a\u2028": "\t<&>"},
        },
    ),
]


@pytest.mark.parametrize(("event_type", "data"), EDUSIGN_EVENTS)
def test_an_edusign_receiver_verifies_the_edusign_hmac(event_type, data, receiver):
    school = SchoolFactory(timezone="Europe/Paris")

    body, headers, sent = _send(
        receiver,
        "/edusign",
        school=school,
        profile="edusign",
        event_type=event_type,
        data=data,
        occurred_at="2026-03-26T07:00:00+00:00",
        secret=CLIENT_SECRET,
    )

    # Written from the document: the Client Secret and the message content, compared.
    mine = hmac.new(CLIENT_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mine, headers["x-edusign-hmac"])
    assert "x-edusign-hmac" in sent  # the header's name as Edusign writes it
    # ... and as Edusign's own receivers do it, over JSON.stringify of the parsed body.
    done = subprocess.run(
        ["node", "-e", EDUSIGN_RECEIVER],
        input=json.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "headers": headers,
                "clientSecret": CLIENT_SECRET,
            }
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"valid": True, "type": headers["x-edusign-webhook-type"]}


def test_an_edusign_receiver_refuses_a_changed_body_or_another_secret(receiver):
    event_type, data = EDUSIGN_EVENTS[0]
    body, headers, _ = _send(
        receiver,
        "/edusign",
        school=SchoolFactory(),
        profile="edusign",
        event_type=event_type,
        data=data,
        occurred_at="2026-03-26T07:00:00+00:00",
        secret=CLIENT_SECRET,
    )

    def valid(content: bytes, secret: str) -> bool:
        mine = hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mine, headers["x-edusign-hmac"])

    assert valid(body, CLIENT_SECRET)
    assert not valid(body.replace(b"Zo", b"Jo"), CLIENT_SECRET)
    assert not valid(body, "whsec_another")


def test_an_edudip_receiver_verifies_the_signature_with_the_downloaded_public_key(
    receiver, live_server
):
    edudip = vendor_samples("edudip")["signature"]
    with urllib.request.urlopen(
        f"{live_server.url}/.well-known/webhooks/ecdsa-public-key.pem", timeout=10
    ) as response:
        assert response.headers["Content-Type"] == "application/x-pem-file"
        public_key = load_pem_public_key(response.read())

    body, headers, sent = _send(
        receiver,
        "/edudip",
        school=SchoolFactory(),
        profile="edudip",
        event_type="webinar.created",
        data={
            "webinar": {
                "id": 48213,
                "title": "Webhooks für Schulen",
                "starts_at": "2024-11-20T16:00:00Z",
                "duration_minutes": 60,
                "language": "de",
                "url": "https://webinars.example.org/w/48213",
            }
        },
        occurred_at="2024-11-14T11:53:57+00:00",
    )

    # The headers as edudip names them.
    assert [name for name in (h["name"] for h in edudip["headers"]) if name not in sent] == []
    algorithm = headers["x-edudip-signature-algorithm"]
    assert algorithm == "SHA256"
    # Hash the payload with that algorithm, then check the signature against the hash.
    payload_hash = hashlib.new(algorithm.lower(), body).digest()
    signature = base64.b64decode(headers["x-edudip-signature"])
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, payload_hash, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    changed = hashlib.sha256(body.replace(b"48213", b"48214", 1)).digest()
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, changed, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert json.loads(body)["type"] == "webinar.created"  # edudip's category name
