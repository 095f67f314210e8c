"""The webhook settings page: one submit shows every problem and keeps what was typed, the
password included; Send Test sends the settings as they are on the page, saved or not."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from django.db import connection

from deliveries.models import Delivery, DeliveryAttempt
from subscriptions.admin import webhooks as webhooks_admin
from subscriptions.models import SECRET_MASK, Subscription
from subscriptions.selectors import signing_secret_current
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory, webhook_with_every_secret
from webhook_engine.signing import sign_v1

pytestmark = pytest.mark.django_db

ADD = "/admin/subscriptions/subscription/add/"


def _form(school, **fields) -> dict:
    return {
        "school": str(school.pk),
        "name": "CRM",
        "url": "https://crm.example.org/hooks",
        "topics": ["course.created"],
        "topics_patterns": "",
        "content_type": "json",
        "basic_auth_enabled": "True",
        "basic_auth_username": "crm",
        "basic_auth_password": "s3cret-pw",
        "custom_headers": "",
        "body_template": "",
        "is_active": "on",
        **fields,
    }


def test_one_submit_shows_every_problem_and_keeps_the_password(client, school, school_admin):
    client.force_login(school_admin)

    page = client.post(
        ADD,
        _form(
            school,
            name="",
            url="http://10.1.2.3/hook",  # a private address: refused (never connected to)
            topics=[],
            topics_patterns="nothing.*",
            basic_auth_username="a:b",
            custom_headers="Authorization: Bearer x",
        ),
    )

    form = page.context["adminform"].form
    assert set(form.errors) == {
        "name",
        "url",
        "topics",
        "basic_auth_username",
        "custom_headers",
    }
    assert 'name="basic_auth_password" value="s3cret-pw"' in page.content.decode()
    assert not Subscription.objects.exists()


def test_send_test_from_the_add_page_sends_the_unsaved_settings_and_saves_nothing(
    client, school, school_admin, receiver
):
    receiver.script("/new", default=Reply(status=202, body=b"accepted"))
    client.force_login(school_admin)

    page = client.post(
        ADD,
        {
            **_form(school, url=receiver.url("/new"), content_type="xml"),
            "send_test-event_type": "course.created",
            "_send_test": "1",
        },
    )
    saved = client.post(ADD, _form(school, url=receiver.url("/new"), content_type="xml"))

    text = page.content.decode()
    assert '<strong class="send-test-status" style="color: #2e7d32;">202</strong>' in text
    assert "not logged: the webhook is not saved yet" in text
    assert 'name="basic_auth_password" value="s3cret-pw"' in text
    [request] = receiver.received("/new")
    assert request.headers["content-type"] == "application/xml"
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(b"crm:s3cret-pw").decode()
    )
    # The test was signed with the secret the webhook got when it was saved.
    assert saved.status_code == 302
    secret = signing_secret_current(subscription=Subscription.objects.get())
    expected = sign_v1(
        secret=secret,
        msg_id=request.headers["webhook-id"],
        timestamp=int(request.headers["webhook-timestamp"]),
        body=request.body,
    )
    assert request.headers["webhook-signature"] == expected
    assert not Delivery.objects.exists()


def test_send_test_on_a_webhooks_page_sends_the_edits_not_yet_saved(
    client, school, school_admin, receiver
):
    receiver.script("/edited", default=Reply(status=500, body=b"boom"))
    subscription = SubscriptionFactory(school=school, name="CRM", url=receiver.url("/saved"))
    client.force_login(school_admin)
    url = f"/admin/subscriptions/subscription/{subscription.pk}/change/"

    page = client.post(
        url,
        {
            **_form(school, url=receiver.url("/edited"), basic_auth_enabled="False"),
            "send_test-event_type": "course.created",
            "_send_test": "1",
        },
    ).content.decode()

    assert receiver.received("/saved") == []
    assert len(receiver.received("/edited")) == 1
    assert "500: the receiver failed while handling the request" in page
    assert "retries continue" not in page  # a test is never retried
    subscription.refresh_from_db()
    assert subscription.url == receiver.url("/saved")
    test = Delivery.objects.get(is_test=True)
    assert test.attempt_log.get().request_url == receiver.url("/edited")


@pytest.mark.django_db(transaction=True)
def test_a_save_refused_at_the_last_moment_keeps_the_secret_send_test_signed_with(
    client, school, school_admin, receiver, monkeypatch
):
    # Given a Send Test from the add page, then another admin taking the name while this one's
    # save runs: the save is refused
    receiver.script("/new", default=Reply(status=202))
    client.force_login(school_admin)
    form = _form(school, url=receiver.url("/new"))
    client.post(ADD, {**form, "send_test-event_type": "course.created", "_send_test": "1"})
    real = webhooks_admin.subscription_save

    def name_taken_first(**kwargs):
        monkeypatch.setattr(webhooks_admin, "subscription_save", real)
        thread = threading.Thread(
            target=lambda: (SubscriptionFactory(school=school, name="CRM"), connection.close())
        )
        thread.start()
        thread.join(10)
        return real(**kwargs)

    monkeypatch.setattr(webhooks_admin, "subscription_save", name_taken_first)
    refused = client.post(ADD, form)

    # When the admin saves again under another name
    saved = client.post(ADD, {**form, "name": "CRM 2"})

    # Then the webhook signs with the secret the test was signed with
    assert (refused.status_code, saved.status_code) == (200, 302)
    [request] = receiver.received("/new")
    secret = signing_secret_current(subscription=Subscription.objects.get(name="CRM 2"))
    assert request.headers["webhook-signature"] == sign_v1(
        secret=secret,
        msg_id=request.headers["webhook-id"],
        timestamp=int(request.headers["webhook-timestamp"]),
        body=request.body,
    )


def test_send_test_of_secret_header_values_not_yet_saved_keeps_them_out_of_the_log(
    client, school, school_admin, support_user, receiver
):
    # Given a webhook with secret headers, whose receiver echoes every request back
    echo = webhook_with_every_secret(school=school, receiver=receiver)
    new_pin, new_key = "pin-new-7d3e9a01", "key-new-2c8b4f66"
    client.force_login(school_admin)

    # When its admin types new values for a header marked secret and an X-Api-Key, and sends a
    # test before saving
    client.post(
        f"/admin/subscriptions/subscription/{echo.pk}/change/",
        {
            **_form(
                school,
                name=echo.name,
                url=echo.url,
                topics=["*"],
                basic_auth_username="lms",
                basic_auth_password="",
                custom_headers=(
                    f"X-Receiver-Sig: {SECRET_MASK}\nX-Tenant-Pin: {new_pin}\n"
                    f"X-Api-Key: {new_key}\nX-Tenant: lycee-public"
                ),
                secret_headers="X-Tenant-Pin",
            ),
            "send_test-event_type": "course.created",
            "_send_test": "1",
        },
    )

    # Then the receiver got them, but the test's attempt log keeps neither, and support staff
    # reading the test delivery see neither
    [request] = receiver.received()
    assert (request.headers["x-tenant-pin"], request.headers["x-api-key"]) == (new_pin, new_key)
    attempt = DeliveryAttempt.objects.get(delivery__is_test=True)
    stored = json.dumps(
        [
            attempt.request_url,
            attempt.request_headers,
            attempt.response_headers,
            attempt.response_body,
            attempt.error_message,
        ]
    )
    assert [value for value in (new_pin, new_key) if value in stored] == []
    client.force_login(support_user)
    page = client.get(f"/admin/deliveries/delivery/{attempt.delivery_id}/change/").content.decode()
    assert [value for value in (new_pin, new_key) if value in page] == []


def test_send_test_of_an_edited_url_with_a_token_goes_there_and_logs_no_token(
    client, school, school_admin, receiver
):
    # Given a webhook whose URL carries a token (stored encrypted)
    echo = webhook_with_every_secret(school=school, receiver=receiver)
    receiver.script("/moved", default=Reply(echo=True))
    client.force_login(school_admin)

    # When its admin types another URL with another token and sends a test before saving
    client.post(
        f"/admin/subscriptions/subscription/{echo.pk}/change/",
        {
            **_form(
                school,
                name=echo.name,
                url=receiver.url("/moved?token=qtok-new-31c4d5e6"),
                topics=["*"],
                basic_auth_username="lms",
                basic_auth_password="",
                custom_headers=f"X-Receiver-Sig: {SECRET_MASK}",
                secret_headers="",
            ),
            "send_test-event_type": "course.created",
            "_send_test": "1",
        },
    )

    # Then the test went to the URL on the page, and its attempt log keeps no token
    assert [r.path for r in receiver.received()] == ["/moved?token=qtok-new-31c4d5e6"]
    attempt = DeliveryAttempt.objects.get(delivery__is_test=True)
    assert attempt.request_url == receiver.url("/moved?token=[redacted]")
    assert "qtok-new-31c4d5e6" not in attempt.response_body


def test_send_test_picks_the_first_type_the_webhooks_topics_match(client, school, school_admin):
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, topics=["course.created"])

    page = client.get(f"/admin/subscriptions/subscription/{webhook.pk}/change/")

    field = page.context["send_test_form"]["event_type"]
    assert field.value() == "course.created"
    # Every type stays on offer: the test sends the settings as they are on the page.
    assert "absence.justified" in dict(field.field.choices)


def test_send_test_on_the_add_page_picks_the_first_type_of_the_topics_chosen(
    client, school, school_admin
):
    client.force_login(school_admin)

    page = client.post(ADD, _form(school, name="", topics=[], topics_patterns="course.*"))

    assert page.status_code == 200
    field = page.context["send_test_form"]["event_type"]
    assert field.value() == "course.completed"
