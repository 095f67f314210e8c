"""Pages besides the lists, in a real browser: on a phone none scrolls sideways (the home page's
slowest receivers, a webhook's recent deliveries and chart numbers, the event reference), and
the body preview says why a body was refused before it reached the preview."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from deliveries.models import DeliveryStatus
from tests.deliveries.factories import delivery_create
from tests.e2e.conftest import log_in
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_pages_with_tables_do_not_scroll_sideways_on_a_phone(
    live_server, browser, school, school_admin
):
    subscription = SubscriptionFactory(
        school=school, name="Customer relationship management (production receiver)"
    )
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.PENDING):
        delivery_create(subscription, status=status)
    context = browser.new_context(locale="de-DE", viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live_server, "ada")

    for path in (
        "/admin/",
        f"/admin/subscriptions/subscription/{subscription.pk}/change/",
        "/admin/events/eventtype/reference/",
    ):
        page.goto(f"{live_server.url}{path}")
        for numbers in page.locator("details.chart-table > summary").all():
            numbers.click()  # the chart's numbers, as a table
        expect(page.locator("#content")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    expect(page.locator("table.recent-deliveries")).to_have_count(0)  # on the reference page
    context.close()


def test_the_body_preview_says_why_a_body_was_refused_before_the_preview(
    live_server, page, school, school_admin
):
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/add/")

    page.get_by_role("textbox", name="Webhook body").fill('{"id": "{{ id }}\x00"}')
    page.get_by_role("button", name="Preview", exact=True).click()

    output = page.locator(".webhook-body-preview-output")
    expect(output).to_be_visible()
    expect(output).to_contain_text("body_template: The value contains a NUL character")
