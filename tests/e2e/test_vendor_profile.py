"""A school moving from Edusign keeps its receiver: in a real browser, a school admin gives a
webhook the Edusign profile, previews Edusign's body, saves, and Send Test shows exactly what
the Edusign receiver got."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from playwright.sync_api import expect

from subscriptions.models import Subscription
from subscriptions.selectors import signing_secret_current
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_school_admin_gives_a_webhook_the_edusign_profile_and_tests_it(
    live_server, page, receiver, school, school_admin
):
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/add/")
    page.get_by_label("Webhook name").fill("Attendance")
    page.get_by_role("textbox", name="URL").fill(receiver.url("/edusign"))
    # The topic groups are folded; the search opens the ones that match.
    page.get_by_label("Find an event type").fill("student.signed")
    page.get_by_label("student.signed", exact=False).first.check()
    page.fill("#id_topics_patterns", "course.*")
    page.get_by_label("Delivery profile").select_option(label="Edusign")

    body = page.locator(".webhook-body-editor")
    expect(body.locator(".webhook-body-vendor")).to_have_text(
        "The Edusign profile sends its own body; the preview shows it."
    )
    expect(page.get_by_role("textbox", name="Webhook body:")).to_be_disabled()
    page.get_by_label("Preview with the sample of").select_option("student.signed")
    page.get_by_role("button", name="Preview").click()
    preview = body.locator(".webhook-body-preview-output")
    expect(preview).to_contain_text('{"type":"on_student_sign","appId":null,"student":')
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".messagelist")).to_contain_text("The webhook “Attendance” was added.")
    webhook = Subscription.objects.get(name="Attendance")
    assert (webhook.profile, webhook.body_template) == ("edusign", "")
    expect(page.get_by_label("Delivery profile")).to_have_value("edusign")
    # The client id Edusign receivers configure is shown with the profile.
    expect(page.locator(".field-profile")).to_contain_text(str(webhook.pk))

    page.select_option("#id_send_test-event_type", "student.signed")
    page.click("button[name=_send_test]")
    result = page.locator("#send-test-result")
    expect(result.locator(".send-test-status")).to_have_text("200")
    [received] = receiver.received("/edusign")
    secret = signing_secret_current(subscription=webhook)
    assert (
        received.headers["x-edusign-hmac"]
        == hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    )
    result.get_by_text("Request as sent").click()
    sent = result.locator("details pre")
    expect(sent).to_contain_text("x-edusign-webhook-type: on_student_sign")
    expect(sent).to_contain_text(f"x-edusign-client-id: {webhook.pk}")
    expect(sent).to_contain_text(received.body.decode())
    assert json.loads(received.body)["student"]["FIRSTNAME"] == "Jean"
