"""Custom headers: secret ones (marked, or named like a credential) encrypted at rest with the
same keys and rotation as the other secrets, never returned, kept by their mask; every header
checked as RFC 9110 allows, with the reason. A URL's query values are secrets the same way."""

import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import delivery_attempt, event_fan_out
from deliveries.services.claim import attempts_interrupted_record
from events.services import event_publish
from subscriptions.crypto import headers_decrypt
from subscriptions.models import SECRET_MASK, Subscription
from subscriptions.selectors import subscription_custom_headers, subscription_url
from subscriptions.services import subscription_create
from tests.deliveries.factories import event_create

pytestmark = pytest.mark.django_db

MASK = SECRET_MASK
NEW = {
    "name": "CRM",
    "url": "http://127.0.0.1:9/hooks",
    "topics": ["*"],
    "custom_headers": {"X-Tenant": "lycee", "X-Receiver-Sig": "sig-1", "X-Pin": "pin-2"},
    "secret_headers": ["X-Pin"],
}


def _row(pk, columns="custom_headers::text, custom_headers_encrypted"):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM subscriptions_subscription WHERE id = %s",  # noqa: S608
            [pk],
        )
        return cursor.fetchone()


def test_secret_values_are_stored_encrypted_and_returned_masked(api, school):
    response = api.post("/api/v1/subscriptions/", NEW, format="json")

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"  # it carries the signing secret
    body = response.json()
    assert body["custom_headers"] == {"X-Tenant": "lycee", "X-Receiver-Sig": MASK, "X-Pin": MASK}
    assert body["secret_headers"] == ["X-Pin"]
    stored, encrypted = _row(body["id"])
    assert "sig-1" not in stored + encrypted
    assert "pin-2" not in stored + encrypted
    assert headers_decrypt(encrypted) == {"X-Receiver-Sig": "sig-1", "X-Pin": "pin-2"}
    subscription = Subscription.objects.get(pk=body["id"])
    assert subscription_custom_headers(subscription=subscription) == NEW["custom_headers"]
    shown = api.get(f"/api/v1/subscriptions/{subscription.pk}/")
    assert shown["Cache-Control"] == "no-store"
    assert "sig-1" not in shown.content.decode()


def test_the_mask_keeps_a_value_a_new_value_replaces_it_and_a_left_out_header_goes(api, school):
    pk = api.post("/api/v1/subscriptions/", NEW, format="json").json()["id"]

    kept = api.patch(
        f"/api/v1/subscriptions/{pk}/",
        {"custom_headers": {"X-Tenant": "lycee-2", "X-Receiver-Sig": MASK, "X-Pin": "pin-3"}},
        format="json",
    )
    subscription = Subscription.objects.get(pk=pk)
    after_patch = subscription_custom_headers(subscription=subscription)
    refused = api.patch(
        f"/api/v1/subscriptions/{pk}/",
        {"custom_headers": {"X-New-Token": MASK}},
        format="json",
    )
    gone = api.patch(f"/api/v1/subscriptions/{pk}/", {"custom_headers": {}}, format="json")

    assert kept.status_code == 200
    assert after_patch == {"X-Tenant": "lycee-2", "X-Receiver-Sig": "sig-1", "X-Pin": "pin-3"}
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": {"custom_headers": ["X-New-Token has no stored value to keep; enter its value."]}
    }
    assert gone.status_code == 200
    subscription.refresh_from_db()
    assert (subscription.custom_headers, subscription.custom_headers_encrypted) == ({}, "")
    assert subscription.secret_headers == []


def test_deliveries_send_the_real_values(school, receiver):
    subscription = subscription_create(school=school, **{**NEW, "url": receiver.url("/hook")})
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)

    attempt = delivery_attempt(delivery_id=delivery_id)

    [request] = receiver.received("/hook")
    assert (request.headers["x-tenant"], request.headers["x-receiver-sig"]) == ("lycee", "sig-1")
    assert request.headers["x-pin"] == "pin-2"
    assert attempt.request_headers["X-Pin"] == "[redacted]"
    assert attempt.request_headers["X-Receiver-Sig"] == "[redacted]"
    assert attempt.request_headers["X-Tenant"] == "lycee"
    assert subscription.pk == attempt.delivery.subscription_id


def test_a_urls_query_values_are_stored_encrypted_returned_masked_and_kept_by_the_mask(
    api, school, receiver
):
    real = receiver.url("/in?token=t0k-9x&team=blue")
    created = api.post("/api/v1/subscriptions/", {**NEW, "url": real}, format="json").json()
    pk = created["id"]
    url, encrypted = _row(pk, "url, url_encrypted")

    moved = api.patch(
        f"/api/v1/subscriptions/{pk}/",
        {"url": receiver.url(f"/moved?token={MASK}&team=green")},
        format="json",
    )
    unknown = api.patch(
        f"/api/v1/subscriptions/{pk}/", {"url": receiver.url(f"/x?other={MASK}")}, format="json"
    )
    subscription = Subscription.objects.get(pk=pk)
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    attempt = delivery_attempt(delivery_id=delivery_id)

    assert created["url"] == receiver.url(f"/in?token={MASK}&team={MASK}")
    assert url == created["url"]
    assert "t0k-9x" not in encrypted
    assert moved.json()["url"] == receiver.url(f"/moved?token={MASK}&team={MASK}")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "errors": {
            "url": ["The query parameter other has no stored value to keep; enter its value."]
        }
    }
    assert subscription_url(subscription=subscription) == receiver.url(
        "/moved?token=t0k-9x&team=green"
    )
    assert [r.path for r in receiver.received()] == ["/moved?token=t0k-9x&team=green"]
    assert attempt.request_url == receiver.url("/moved?token=[redacted]&team=[redacted]")


@pytest.mark.parametrize(
    ("headers", "secret", "message"),
    [
        (
            {"X-Token": "日本語"},
            [],
            "The value of X-Token contains '日' (U+65E5), which an HTTP header cannot carry "
            "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
            "base64 or percent-encoding.",
        ),
        (
            {"X-Token": "a\u2028b"},
            [],
            "The value of X-Token contains U+2028, which an HTTP header cannot carry "
            "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
            "base64 or percent-encoding.",
        ),
        (
            {"X" * 10_000: "v"},
            [],
            f"The header name {'X' * 30 + '…'!r} has 10000 characters; the limit is 100.",
        ),
        (
            {"X Token": "v"},
            [],
            "'X Token' is not a valid header name: it contains ' ' (U+0020). Use letters, digits "
            "and !#$%&'*+-.^_`|~ (RFC 9110, 5.6.2).",
        ),
    ],
)
def test_headers_http_cannot_carry_are_refused_with_the_reason(api, headers, secret, message):
    response = api.post(
        "/api/v1/subscriptions/",
        {**NEW, "custom_headers": headers, "secret_headers": secret},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"errors": {"custom_headers": [message]}}
    assert Subscription.objects.count() == 0


def test_marking_a_header_that_is_not_there_is_refused(api):
    response = api.post(
        "/api/v1/subscriptions/", {**NEW, "secret_headers": ["X-Nope"]}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "errors": {
            "secret_headers": ["X-Nope is marked secret but is not one of the custom headers."]
        }
    }


def test_the_admin_form_masks_secret_values_and_keeps_them(admin_client, school):
    subscription = subscription_create(
        school=school, **{**NEW, "url": "http://127.0.0.1:9/hooks?token=abc123"}
    )
    form = admin_client.get(f"/admin/subscriptions/subscription/{subscription.pk}/change/")

    page = form.content.decode()
    assert f"X-Pin: {MASK}" in page
    assert f"X-Receiver-Sig: {MASK}" in page
    assert f"http://127.0.0.1:9/hooks?token={MASK}" in page
    assert "pin-2" not in page
    assert "sig-1" not in page
    assert "abc123" not in page
    response = admin_client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/change/",
        {
            "name": "CRM",
            "url": f"http://127.0.0.1:9/hooks?token={MASK}",
            "topics": ["course.created"],
            "content_type": "json",
            "basic_auth_enabled": "False",
            "custom_headers": f"X-Tenant: lycee\r\nX-Receiver-Sig: {MASK}\r\nX-Pin: {MASK}",
            "secret_headers": "X-Pin, X-Tenant",
            "body_template": "",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.secret_headers == ["X-Pin", "X-Tenant"]
    assert subscription.custom_headers == {"X-Tenant": MASK, "X-Receiver-Sig": MASK, "X-Pin": MASK}
    assert subscription_custom_headers(subscription=subscription) == NEW["custom_headers"]
    assert subscription_url(subscription=subscription) == "http://127.0.0.1:9/hooks?token=abc123"


def test_rotating_the_encryption_key_re_encrypts_secret_headers(school, settings):
    subscription = subscription_create(school=school, **NEW)
    new_key = Fernet.generate_key().decode()
    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key, *settings.WEBHOOKS_ENCRYPTION_KEYS]

    call_command("encryption_keys_rotate")

    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    subscription.refresh_from_db()
    stored = json.loads(
        Fernet(new_key.encode()).decrypt(subscription.custom_headers_encrypted.encode())
    )
    assert stored == {"X-Receiver-Sig": "sig-1", "X-Pin": "pin-2"}
    assert subscription_custom_headers(subscription=subscription) == NEW["custom_headers"]


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_encrypts_the_values_of_existing_headers_named_like_a_credential(catalog):
    # Back to every app's latest migration, not only subscriptions': going back to 0006 also
    # unapplies the other apps' migrations that depend on 0007 (deliveries 0011 and later).
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    executor = MigrationExecutor(connection)
    executor.migrate([("subscriptions", "0006_secret_headers")])
    old = executor.loader.project_state([("subscriptions", "0006_secret_headers")]).apps
    try:
        School = old.get_model("schools", "School")
        school = School.objects.create(name="Old", slug="old")
        OldSubscription = old.get_model("subscriptions", "Subscription")
        row = OldSubscription.objects.create(
            school=school,
            name="Legacy",
            topics=["*"],
            custom_headers={
                "X-Api-Key": "k-legacy-1",
                "X-Receiver-Sig": "s-legacy-2",
                "X-Tenant": "t",
            },
            url="https://x.example/h?token=u-legacy-3&flag",
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    subscription = Subscription.objects.get(pk=row.pk)
    stored, encrypted = _row(row.pk)
    assert subscription.custom_headers == {
        "X-Api-Key": MASK,
        "X-Receiver-Sig": MASK,
        "X-Tenant": "t",
    }
    assert "k-legacy-1" not in stored + encrypted
    url, url_encrypted = _row(row.pk, "url, url_encrypted")
    assert url == f"https://x.example/h?token={MASK}&flag"
    assert "u-legacy-3" not in url_encrypted
    assert (
        subscription_url(subscription=subscription) == "https://x.example/h?token=u-legacy-3&flag"
    )
    assert subscription_custom_headers(subscription=subscription) == {
        "X-Api-Key": "k-legacy-1",
        "X-Receiver-Sig": "s-legacy-2",
        "X-Tenant": "t",
    }


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_keeps_a_long_url_whose_masked_query_is_longer_than_the_column(catalog):
    # The first release took any URL of up to 2,000 characters; the mask is longer than a
    # short query value, so the masked form of this one does not fit in varchar(2000).
    url = "https://x.example/h?" + "&".join(f"p{i}={i % 10}" for i in range(280))
    assert len(url) <= 2000 < len(f"https://x.example/h?{MASK}") + 280 * len(MASK)
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    executor = MigrationExecutor(connection)
    executor.migrate([("subscriptions", "0006_secret_headers")])
    old = executor.loader.project_state([("subscriptions", "0006_secret_headers")]).apps
    try:
        school = old.get_model("schools", "School").objects.create(name="Old", slug="old")
        row = old.get_model("subscriptions", "Subscription").objects.create(
            school=school, name="Long", topics=["*"], url=url
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    try:
        subscription = Subscription.objects.get(pk=row.pk)
        assert subscription.url == "https://x.example/h?" + "&".join(
            f"p{i}={MASK}" for i in range(280)
        )
        assert subscription_url(subscription=subscription) == url
        # An attempt its worker did not finish is logged under the masked URL, cut to fit.
        event = event_create(subscription.school)
        delivery = Delivery.objects.create(
            school=subscription.school,
            event=event,
            subscription=subscription,
            event_type=event.type_id,
            body=b"{}",
            content_type="application/json",
            status=DeliveryStatus.PENDING,
            attempts=2,
            next_attempt_at=event.created_at,
        )
        attempts_interrupted_record([(delivery, 2)])
        [interrupted] = DeliveryAttempt.objects.filter(delivery=delivery, number=2)
        assert interrupted.request_url == subscription.url[:1999] + "…"
    finally:  # the next tests get the column their migrations made
        Subscription.objects.filter(pk=row.pk).delete()
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE subscriptions_subscription ALTER COLUMN url TYPE varchar(2000)"
            )


def test_a_delivery_to_a_url_whose_redacted_query_is_longer_than_the_log_column_is_recorded(
    school, receiver
):
    # Accepted (masked, it fits in 2,000 characters), but "[redacted]" is longer than the mask.
    query = "&".join(f"q={i % 10}" for i in range(160))
    subscription = subscription_create(
        school=school, name="Many", url=receiver.url(f"/many?{query}"), topics=["*"]
    )
    assert len(subscription.url) <= 2000 < len(subscription.url) + 160 * 2
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)

    attempt = delivery_attempt(delivery_id=delivery_id)

    assert [r.path for r in receiver.received()] == [f"/many?{query}"]
    assert attempt is not None
    assert attempt.delivery.status == "delivered"
    assert len(attempt.request_url) == 2000
    assert attempt.request_url.startswith(receiver.url("/many?q=[redacted]&q=[redacted]&"))
    assert attempt.request_url.endswith("…")
    assert "=1&" not in attempt.request_url
