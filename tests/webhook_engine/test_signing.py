import base64
import json
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from subscriptions.services import signing_secret_generate
from webhook_engine.signing import message_id, sign_v1, signature_header


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_v1_signature_verifies_with_the_standard_webhooks_library():
    secret = signing_secret_generate()
    body = json.dumps({"type": "course.created", "data": {"é": 1}}).encode()
    timestamp = int(time.time())

    signature = sign_v1(secret=secret, msg_id="msg_2b1f", timestamp=timestamp, body=body)

    verified = Webhook(secret).verify(body, _headers("msg_2b1f", timestamp, signature))
    assert verified == {"type": "course.created", "data": {"é": 1}}


def test_a_changed_body_or_another_secret_does_not_verify():
    secret = signing_secret_generate()
    timestamp = int(time.time())
    signature = sign_v1(secret=secret, msg_id="msg_1", timestamp=timestamp, body=b"{}")

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"x":1}', _headers("msg_1", timestamp, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(signing_secret_generate()).verify(b"{}", _headers("msg_1", timestamp, signature))


def test_secrets_are_random_whsec_values_of_32_bytes():
    first, second = signing_secret_generate(), signing_secret_generate()

    assert first.startswith("whsec_")
    assert first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_several_signatures_are_space_separated_and_message_ids_are_stable():
    delivery_id = uuid.UUID("12345678-1234-5678-1234-567812345678")

    assert signature_header(["v1,a", "v1,b"]) == "v1,a v1,b"
    assert message_id(delivery_id) == "msg_12345678123456781234567812345678"
    assert message_id(delivery_id) == message_id(uuid.UUID(str(delivery_id)))
