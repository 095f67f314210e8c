"""Deliveries of a webhook with a vendor profile: Send Test shows exactly what the vendor's
receiver gets, a signing key the platform lacks sends nothing, and the public key is served."""

import hashlib
import hmac
import json

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deliveries.display import attempt_shown
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import deliveries_attempt, delivery_test_send
from subscriptions.services import subscription_secret_rotate, subscription_update
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from tests.vendors.golden import vendor_delivery
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


def test_a_retry_after_a_profile_change_keeps_the_profile_its_body_was_made_in(school, receiver):
    # The body is rendered once, when the event fans out; the headers at every attempt. A
    # webhook moved to Edusign while a standard delivery waits for its retry must not send the
    # standard envelope under Edusign's headers (an Edusign receiver would verify the HMAC and
    # then read a body that is not Edusign's).
    receiver.script("/hook", Reply(status=500))
    delivery = vendor_delivery(
        school,
        profile="standard",
        event_type="course.created",
        data={"course": {"id": "c-42", "name": "Maths"}},
        occurred_at=timezone.now().isoformat(),
        url=receiver.url("/hook"),
        topics=["course.*"],
    )
    deliveries_attempt(delivery_ids=[delivery.pk])
    subscription_update(subscription=delivery.subscription, profile="edusign")
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())

    deliveries_attempt(delivery_ids=[delivery.pk])

    first, second = receiver.received("/hook")
    assert second.body == first.body
    assert json.loads(second.body)["type"] == "course.created"
    assert sorted(name for name in second.headers if name.startswith("x-edusign-")) == []
    assert Webhook(delivery.subscription.secret).verify(second.body, second.headers)
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED


def test_a_delivery_made_after_the_profile_changed_speaks_the_new_profile(school, receiver):
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["course.*"])
    subscription_update(subscription=webhook, profile="edusign")

    delivery_test_send(subscription=webhook, event_type="course.created")

    [received] = receiver.received("/hook")
    assert json.loads(received.body)["type"] == "on_course_created"
    assert received.headers["x-edusign-webhook-type"] == "on_course_created"


def test_the_migration_gives_existing_deliveries_their_webhooks_profile(school):
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    made = {
        profile: vendor_delivery(
            school,
            profile=profile,
            event_type="course.created",
            data={"course": {"id": "c-42", "name": "Maths"}},
            occurred_at=timezone.now().isoformat(),
        ).pk
        for profile in ("standard", "edusign", "braincert")
    }
    with connection.cursor() as cursor:  # the rows' deferred checks, before the table changes
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    call_command("migrate", "deliveries", "0017", verbosity=0)

    call_command("migrate", "deliveries", "0018", verbosity=0)

    MigrationExecutor(connection).migrate(latest)
    assert {profile: Delivery.objects.get(pk=pk).profile for profile, pk in made.items()} == {
        "standard": "standard",
        "edusign": "edusign",
        "braincert": "braincert",
    }
