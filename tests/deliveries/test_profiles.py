"""Deliveries of a webhook with a vendor profile: Send Test shows exactly what the vendor's
receiver gets, a signing key the platform lacks sends nothing, and the public key is served."""

import hashlib
import hmac
import json

import pytest
from django.core.exceptions import ValidationError
from standardwebhooks.webhooks import Webhook

from deliveries.display import attempt_shown
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import delivery_test_send
from subscriptions.services import subscription_secret_rotate
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def test_send_test_sends_and_shows_the_vendors_body_and_headers(school, receiver):
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/edusign"), topics=["student.*"], profile="edusign"
    )

    attempt = delivery_test_send(subscription=webhook, event_type="student.signed")

    [received] = receiver.received("/edusign")
    delivery = Delivery.objects.get(pk=attempt.delivery_id)
    assert bytes(delivery.body) == received.body  # the page shows what the receiver got
    assert json.loads(received.body)["type"] == "on_student_sign"
    assert attempt.request_headers["x-edusign-webhook-type"] == "on_student_sign"
    assert (
        attempt.request_headers["x-edusign-hmac"]
        == hmac.new(webhook.secret.encode(), received.body, hashlib.sha256).hexdigest()
    )
    assert Webhook(webhook.secret).verify(received.body, received.headers)  # alongside


def test_send_test_of_a_type_the_vendor_lacks_sends_nothing(school, receiver):
    webhook = SubscriptionFactory(school=school, url=receiver.url("/b"), profile="braincert")

    with pytest.raises(ValidationError) as raised:
        delivery_test_send(subscription=webhook, event_type="student.signed")

    assert raised.value.message_dict == {
        "event_type": [
            "BrainCert has no event for student.signed; a webhook with the BrainCert profile "
            "receives only BrainCert's events."
        ]
    }
    assert receiver.received() == []
    assert not Delivery.objects.exists()


def test_without_the_platforms_ecdsa_key_an_edudip_delivery_sends_nothing(
    school, receiver, settings
):
    webhook = SubscriptionFactory(school=school, url=receiver.url("/edudip"), profile="edudip")
    settings.WEBHOOKS_ECDSA_KEY = ""

    attempt = delivery_test_send(subscription=webhook, event_type="webinar.created")

    assert receiver.received() == []
    assert (attempt.error_kind, attempt.response_status) == (ErrorKind.CONFIGURATION, None)
    assert attempt.error_message == (
        "The request could not be signed: The edudip profile signs with the platform's ECDSA "
        "key, and none is configured (WEBHOOKS_ECDSA_KEY); nothing was sent."
    )
    assert Delivery.objects.get().status == DeliveryStatus.FAILED


def test_the_ecdsa_public_key_is_served_as_pem_and_is_absent_without_a_key(client, settings):
    served = client.get("/.well-known/webhooks/ecdsa-public-key.pem")
    settings.WEBHOOKS_ECDSA_KEY = ""
    absent = client.get("/.well-known/webhooks/ecdsa-public-key.pem")

    assert served.status_code == 200
    assert served["Content-Type"] == "application/x-pem-file"
    assert served.content.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert absent.status_code == 404


def test_who_may_not_see_secrets_still_reads_the_vendors_headers(school, receiver):
    webhook = SubscriptionFactory(
        school=school,
        url=receiver.url("/edusign"),
        profile="edusign",
        custom_headers={"X-Api-Token": "receiver-token-123"},
    )
    attempt = delivery_test_send(subscription=webhook, event_type="course.created")

    shown = attempt_shown(attempt, secrets=["receiver-token-123"])["request_headers"]

    assert shown["X-Api-Token"] == "[hidden]"
    assert shown["x-edusign-webhook-type"] == "on_course_created"
    assert shown["x-edusign-client-id"] == str(webhook.pk)


def test_after_a_rotation_edusigns_hmac_uses_the_new_secret_and_the_standard_one_both(
    school, receiver
):
    webhook = SubscriptionFactory(school=school, url=receiver.url("/edusign"), profile="edusign")
    old = webhook.secret
    new = subscription_secret_rotate(subscription=webhook)

    delivery_test_send(subscription=webhook, event_type="course.created")

    [received] = receiver.received("/edusign")
    assert (
        received.headers["x-edusign-hmac"]
        == hmac.new(new.encode(), received.body, hashlib.sha256).hexdigest()
    )
    assert Webhook(old).verify(received.body, received.headers)
    assert Webhook(new).verify(received.body, received.headers)
