"""Signatures (v1, v1a), secret rotation, basic auth and secrets at rest, end to end in-process."""

import base64
import datetime as dt
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import delivery_attempt, event_fan_out
from events.services import event_publish
from subscriptions.crypto import secret_encrypt
from subscriptions.models import SigningSecret
from subscriptions.selectors import signing_secret_current
from subscriptions.services import subscription_create, subscription_secret_rotate
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db


def _deliver(subscription):
    event = event_publish(
        school=subscription.school, type="course.created", data={"course": {"id": "c1"}}
    )
    [delivery_id] = event_fan_out(event_id=event.id)
    attempt = delivery_attempt(delivery_id=delivery_id)
    return Delivery.objects.get(pk=delivery_id), attempt


def _signatures(received, version):
    return [
        entry.split(",", 1)[1]
        for entry in received.headers["webhook-signature"].split()
        if entry.split(",", 1)[0] == version
    ]


def test_v1a_verifies_with_the_public_key_served_as_pem_and_jwks(school, receiver, client):
    subscription = subscription_create(
        school=school, name="ERP", url=receiver.url("/erp"), topics=["*"], sign_ed25519=True
    )

    _deliver(subscription)

    [received] = receiver.received("/erp")
    pem = client.get("/.well-known/webhooks/public-key.pem")
    jwks = client.get("/.well-known/webhooks/jwks.json").json()
    public_key = load_pem_public_key(pem.content)
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode()
        + received.body
    )
    [v1a] = _signatures(received, "v1a")
    public_key.verify(base64.b64decode(v1a), signed)  # raises if it does not verify
    with pytest.raises(InvalidSignature):
        public_key.verify(base64.b64decode(v1a), signed + b" ")
    [jwk] = jwks["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    raw = base64.urlsafe_b64decode(jwk["x"] + "==")
    assert raw == public_key.public_bytes_raw()
    assert len(jwk["kid"]) == 43  # base64url SHA-256 thumbprint
    # The v1 signature is there too, and verifies with the standard library.
    secret = signing_secret_current(subscription=subscription)
    assert Webhook(secret).verify(received.body, received.headers)["type"] == "course.created"


def test_without_v1a_only_the_hmac_signature_is_sent(school, receiver):
    subscription = subscription_create(
        school=school, name="CRM", url=receiver.url("/crm"), topics=["*"]
    )

    _deliver(subscription)

    [received] = receiver.received("/crm")
    assert len(_signatures(received, "v1")) == 1
    assert _signatures(received, "v1a") == []


def test_during_rotation_both_secrets_verify_and_after_the_grace_period_only_the_new(
    school, receiver
):
    subscription = subscription_create(
        school=school, name="CRM", url=receiver.url("/crm"), topics=["*"]
    )
    old = signing_secret_current(subscription=subscription)

    new = subscription_secret_rotate(subscription=subscription)
    _deliver(subscription)
    SigningSecret.objects.filter(subscription=subscription, expires_at__isnull=False).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )  # the grace period is over
    _deliver(subscription)

    during, after = receiver.received("/crm")
    assert new != old
    assert signing_secret_current(subscription=subscription) == new
    assert len(_signatures(during, "v1")) == 2
    assert Webhook(old).verify(during.body, during.headers)
    assert Webhook(new).verify(during.body, during.headers)
    assert len(_signatures(after, "v1")) == 1
    assert Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


def test_the_grace_period_of_a_rotation_defaults_to_24_hours(school):
    subscription = subscription_create(
        school=school, name="CRM", url="https://crm.example.org/", topics=["*"]
    )

    subscription_secret_rotate(subscription=subscription)

    old = SigningSecret.objects.get(subscription=subscription, expires_at__isnull=False)
    remaining = old.expires_at - timezone.now()
    assert dt.timedelta(hours=23, minutes=59) < remaining <= dt.timedelta(hours=24)


def test_basic_auth_and_custom_headers_arrive_as_sent_and_the_password_is_not_logged(
    school, receiver
):
    subscription = subscription_create(
        school=school,
        name="LMS",
        url=receiver.url("/lms"),
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="école",
        basic_auth_password="s3cret:with colon",
        custom_headers={"X-Tenant": "lycee-42"},
    )

    _, attempt = _deliver(subscription)

    [received] = receiver.received("/lms")
    expected = base64.b64encode("école:s3cret:with colon".encode()).decode()
    assert received.headers["authorization"] == f"Basic {expected}"
    assert received.headers["x-tenant"] == "lycee-42"
    assert attempt.request_headers["Authorization"] == "[redacted]"
    assert attempt.request_headers["X-Tenant"] == "lycee-42"
    stored = DeliveryAttempt.objects.get(pk=attempt.pk)
    assert "s3cret" not in str(stored.request_headers)
    assert expected not in str(stored.request_headers)


@pytest.mark.django_db(transaction=True)
def test_secrets_are_not_in_plaintext_in_a_database_dump(catalog):
    school = SchoolFactory()
    subscription = subscription_create(
        school=school,
        name="LMS",
        url="https://lms.example.org/hooks",
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="lms",
        basic_auth_password="correct-horse-battery-staple",
    )
    secret = signing_secret_current(subscription=subscription)
    database = connection.settings_dict

    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            f"--host={database['HOST']}",
            f"--port={database['PORT']}",
            f"--username={database['USER']}",
            database["NAME"],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert "lms.example.org" in dump  # the dump does hold the subscription
    assert "correct-horse-battery-staple" not in dump
    assert secret not in dump
    assert secret.removeprefix("whsec_") not in dump


def test_a_secret_the_keys_cannot_read_fails_the_attempt_and_sends_nothing(
    school, receiver, settings
):
    subscription = subscription_create(
        school=school, name="CRM", url=receiver.url("/crm"), topics=["*"]
    )
    current_keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    # Encrypted under a key that is no longer configured.
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    SigningSecret.objects.filter(subscription=subscription).update(
        secret_encrypted=secret_encrypt("whsec_" + base64.b64encode(b"x" * 32).decode())
    )
    settings.WEBHOOKS_ENCRYPTION_KEYS = current_keys

    delivery, attempt = _deliver(subscription)

    assert receiver.received() == []
    assert attempt.error_kind == "configuration"
    assert "cannot be decrypted with WEBHOOKS_ENCRYPTION_KEYS" in attempt.error_message
    assert delivery.last_error_kind == "configuration"


def test_rotating_a_secret_the_keys_cannot_read_lets_deliveries_go_at_once(
    school, receiver, settings
):
    subscription = subscription_create(
        school=school, name="CRM", url=receiver.url("/crm"), topics=["*"]
    )
    current_keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # a key since lost
    SigningSecret.objects.filter(subscription=subscription).update(
        secret_encrypted=secret_encrypt("whsec_" + base64.b64encode(b"x" * 32).decode())
    )
    settings.WEBHOOKS_ENCRYPTION_KEYS = current_keys

    new = subscription_secret_rotate(subscription=subscription)
    delivery, attempt = _deliver(subscription)

    # The unreadable secret can sign nothing: it stops at once, not after the grace period.
    [received] = receiver.received("/crm")
    assert (delivery.status, attempt.error_kind) == ("delivered", "")
    assert len(_signatures(received, "v1")) == 1
    assert Webhook(new).verify(received.body, received.headers)["type"] == "course.created"
    assert signing_secret_current(subscription=subscription) == new
