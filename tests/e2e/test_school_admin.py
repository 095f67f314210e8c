"""A school admin's day in the admin, in a real browser: add a webhook like BrainCert's settings
page, Send Test, see a failure in the list and the banner, open the delivery, retrigger it. A
second school's admin sees none of it."""

from __future__ import annotations

import base64
import re
import time

import pytest
from django.db import transaction
from playwright.sync_api import expect

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from events.models import EventType
from events.services import event_publish
from subscriptions.models import Subscription
from tests.e2e.conftest import log_in
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_school_admin_adds_a_webhook_tests_it_and_retriggers_a_failed_delivery(
    live_server, page, browser, worker_process, receiver, school, school_admin,
    other_school_admin, screenshots,
):  # fmt: skip
    receiver.script("/crm", default=Reply(status=200, body=b"<ok>received</ok>"))
    log_in(page, live_server, "ada")

    # Add a webhook in BrainCert's order: name, URL, topics, content type, basic auth, body.
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/add/")
    page.click("#toggle-nav-sidebar")  # room for every column of the list (kept while browsing)
    page.fill("#id_name", "CRM")
    page.fill("#id_url", receiver.url("/crm"))
    # The topic groups are folded; the search opens the ones that match.
    page.get_by_label("Find an event type").fill("course.created")
    page.check("input[name=topics][value='course.created']")
    page.get_by_label("Find an event type").fill("student.signed")
    page.check("input[name=topics][value='student.signed']")
    page.get_by_label("Find an event type").fill("")
    page.fill("#id_topics_patterns", "live_class.*")
    page.check("input[name=content_type][value=xml]")
    expect(page.locator("#id_basic_auth_username")).to_be_hidden()
    page.check("input[name=basic_auth_enabled][value=True]")
    expect(page.locator("#id_basic_auth_username")).to_be_visible()
    page.fill("#id_basic_auth_username", "crm")
    page.fill("#id_basic_auth_password", "s3cret-pw")
    page.select_option("#id_body_template_preset", "braincert")
    expect(page.locator("#id_body_template")).to_have_value(
        re.compile(r'^<\?xml version="1.0" encoding="utf-8"\?>\n<webhook><id>')
    )
    page.click(".webhook-body-preview-button")
    preview = page.locator(".webhook-body-preview-output")
    expect(preview).to_contain_text("<resource>course</resource><action>created</action>")
    page.screenshot(path=screenshots / "webhook-form.png", full_page=True)
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("The webhook “CRM” was added.")
    subscription = Subscription.objects.get(name="CRM")
    assert subscription.topics == ["course.created", "student.signed", "live_class.*"]
    assert subscription.school == school
    assert (subscription.content_type, subscription.basic_auth_enabled) == ("xml", True)

    # The signing secret is masked until revealed.
    secret = page.locator(".webhook-secret-value")
    assert "••••" in secret.inner_text()
    page.click(".webhook-secret-reveal")
    expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$"))

    # Send Test: the sample goes out now, and the answer is shown in the page.
    page.select_option("#id_send_test-event_type", "course.created")
    page.click("button[name=_send_test]")
    result = page.locator("#send-test-result")
    expect(result.locator(".send-test-status")).to_have_text("200")
    expect(result.locator(".send-test-response-body")).to_have_text("<ok>received</ok>")
    page.screenshot(path=screenshots / "send-test-result.png", full_page=True)
    [sent] = receiver.received("/crm")
    assert sent.headers["content-type"] == "application/xml"
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(b"crm:s3cret-pw").decode()
    assert b"<resource>course</resource>" in sent.body
    assert Delivery.objects.get(is_test=True).subscription == subscription

    # The receiver breaks; a real event fails every attempt.
    receiver.script("/crm", default=Reply(status=500, body=b"database is down"))
    sample = EventType.objects.get(key="course.created").sample_payload
    with transaction.atomic():
        event = event_publish(school=school, type="course.created", data=sample)
    delivery = _wait_for(
        lambda: Delivery.objects.filter(event=event, status=DeliveryStatus.FAILED).first()
    )

    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    row = page.locator("#result_list tbody tr", has_text="CRM")
    expect(row.locator(".webhook-state-failing")).to_have_text("Failing")
    expect(row.locator(".webhook-failures")).to_have_text("1 failure / 24 h")
    expect(row.locator(".webhook-rate")).to_contain_text("0% / 7 d")
    page.screenshot(path=screenshots / "webhooks-list.png", full_page=True)
    # With the navigation collapsed the list starts inside the window, not cut off at its left.
    assert page.locator("#changelist").bounding_box()["x"] >= 0
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator(".webhook-notice")).to_contain_text("CRM")
    expect(page.locator(".webhook-notice")).to_contain_text("has been failing since")

    # Open the failed delivery from the list's failure count.
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    page.locator("#result_list tbody tr", has_text="CRM").locator(".webhook-failures a").click()
    page.locator("#result_list tbody tr").first.locator("th a").click()
    expect(page.locator("#attempt-1")).to_contain_text("500")
    expect(page.locator("#attempt-1 .attempt-explanation")).to_contain_text(
        "500: the receiver failed while handling the request"
    )
    expect(page.locator("#attempt-1 .attempt-response-body")).to_have_text("database is down")
    expect(page.locator("#attempt-1 .attempt-request-headers")).to_contain_text(
        "Authorization: [redacted]"
    )
    page.screenshot(path=screenshots / "delivery-detail.png", full_page=True)

    # Fixed: retrigger it and watch it arrive.
    receiver.script("/crm", default=Reply(status=200, body=b"<ok>again</ok>"))
    attempts_before = delivery.attempts
    page.click("#retrigger")
    expect(page.locator(".messagelist")).to_contain_text("Sending it now")
    _wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.DELIVERED).exists()
    )
    page.reload()
    expect(page.locator(".field-status_detail")).to_contain_text("Delivered")
    last = page.locator(f"#attempt-{attempts_before + 1}")
    expect(last).to_contain_text("Sent now by hand")
    expect(last).to_contain_text("200 delivered")

    # Another school's admin sees none of it, only their own webhook.
    SubscriptionFactory(school=other_school_admin.school_memberships.get().school, name="LMS")
    context = browser.new_context(locale="en-US")
    other = context.new_page()
    log_in(other, live_server, "bob")
    other.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    expect(other.locator("#changelist")).not_to_contain_text("CRM")
    expect(other.locator(".paginator")).to_contain_text("1 webhook")
    for url in (
        f"/admin/subscriptions/subscription/{subscription.pk}/change/",
        f"/admin/subscriptions/subscription/{subscription.pk}/send-test/",
        f"/admin/deliveries/delivery/{delivery.pk}/change/",
        f"/admin/events/event/{event.pk}/change/",
        f"/admin/schools/school/{school.pk}/change/",
    ):
        assert other.goto(f"{live_server.url}{url}").status == 404, url
    other.goto(f"{live_server.url}/admin/deliveries/delivery/")
    options = other.locator("select[aria-label=webhook] option").all_inner_texts()
    assert options == ["All", "LMS"]
    autocomplete = other.request.get(
        f"{live_server.url}/admin/autocomplete/?app_label=subscriptions&model_name=subscription"
        "&field_name=school&term="
    ).json()
    assert [result["text"] for result in autocomplete["results"]] == ["Collège Jean Moulin"]
    # An action with forged ids selects nothing.
    token = other.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    forged = other.request.post(
        f"{live_server.url}/admin/deliveries/delivery/",
        form={
            "csrfmiddlewaretoken": token,
            "action": "retrigger_selected",
            "index": "0",
            "_selected_action": str(delivery.pk),
            "confirm": "yes",
        },
        headers={"Accept-Language": "en"},
    )
    assert forged.status == 200
    assert "None of the selected deliveries is in the log any more" in forged.text()
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == attempts_before + 1
    context.close()
