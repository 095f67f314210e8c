"""A school admin pauses a webhook for a maintenance window and resumes it, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from deliveries.models import DeliveryStatus
from deliveries.services.pausing import subscription_pause
from subscriptions.models import Subscription
from tests.deliveries.factories import delivery_create
from tests.e2e.conftest import log_in
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_school_admin_pauses_a_webhook_from_its_page_then_resumes_it(
    live_server, page, school, school_admin, screenshots
):
    webhook = SubscriptionFactory(school=school, name="CRM")
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/{webhook.pk}/change/")

    page.get_by_role("link", name="Pause", exact=True).click()
    expect(page.get_by_label("Resume automatically at")).to_be_empty()
    page.get_by_role("button", name="Pause", exact=True).click()

    expect(page.locator(".messagelist")).to_contain_text("The webhook “CRM” is paused")
    expect(page.locator(".webhook-state-paused")).to_have_text("Paused")
    assert Subscription.objects.get(pk=webhook.pk).paused_at is not None
    for _ in range(3):  # events published during the maintenance window, held
        delivery_create(webhook, status=DeliveryStatus.PENDING, attempts=0, enqueued_at=None)

    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    expect(page.locator(".webhook-state-paused")).to_have_text("Paused")
    page.screenshot(path=screenshots / "webhooks-paused.png")
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/{webhook.pk}/change/")
    page.get_by_role("link", name="Resume", exact=True).click()
    expect(page.get_by_text("3 deliveries are held.")).to_be_visible()
    page.screenshot(path=screenshots / "webhook-resume-page.png")
    page.get_by_role("button", name="Resume now").click()

    expect(page.locator(".messagelist")).to_contain_text("The webhook “CRM” is resumed")
    expect(page.get_by_role("link", name="Pause", exact=True)).to_be_visible()
    assert Subscription.objects.get(pk=webhook.pk).paused_at is None


def test_the_home_page_lists_a_paused_webhook_and_resumes_it(
    live_server, browser, school, school_admin, screenshots
):
    webhook = SubscriptionFactory(school=school, name="CRM")
    subscription_pause(subscription=webhook)
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    log_in(page, live_server, "ada")

    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_role("status")).to_contain_text("1 webhook est en pause")
    paused = page.locator("#paused")
    expect(paused.get_by_role("heading")).to_have_text("En pause")
    expect(paused).to_contain_text("CRM est en pause depuis le")
    page.screenshot(path=screenshots / "home-paused.png", full_page=True)
    paused.get_by_role("button", name="Reprendre").click()

    expect(page.locator(".messagelist").first).to_contain_text("Le webhook «\xa0CRM\xa0» a repris")
    assert Subscription.objects.get(pk=webhook.pk).paused_at is None
    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_role("status")).to_contain_text("Tout va bien")
    expect(page.locator("#paused")).to_have_count(0)
    context.close()
