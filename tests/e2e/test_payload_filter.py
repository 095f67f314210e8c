"""In a real browser: a school admin gives a webhook a payload filter, sees a typo refused with
the condition named, corrects it, and reads the saved filter in plain words with the event
types whose samples pass it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from subscriptions.models import Subscription
from tests.e2e.conftest import log_in
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_school_admin_filters_a_webhook_on_the_group_of_the_course(
    live_server, page, school, school_admin
):
    webhook = SubscriptionFactory(
        school=school,
        name="Group 12779",
        url="https://crm.example.org/hooks",
        topics=["course.created", "group.created"],
    )
    log_in(page, live_server, "ada")
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/{webhook.pk}/change/")

    page.get_by_role("textbox", name="Payload filter").fill(
        '{"field": "grup.id", "op": "eq", "value": 12779}'
    )
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-payload_filter .errorlist")).to_have_text(
        "“grup.id is 12779”: the selected event types have no field grup.id."
    )
    assert Subscription.objects.get(pk=webhook.pk).payload_filter is None

    page.get_by_role("textbox", name="Payload filter").fill(
        '{"any": [{"field": "group.id", "op": "eq", "value": 12779},'
        ' {"field": "course.name", "op": "starts_with", "value": "Intro"}]}'
    )
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    words = page.locator(".field-payload_filter_display")
    expect(words).to_contain_text("At least one of these holds:")
    expect(words).to_contain_text("group.id is 12779")
    expect(words).to_contain_text('course.name starts with "Intro"')
    expect(words).to_contain_text("Samples that pass: course.created.")
    expect(words).to_contain_text("Samples that do not: group.created.")
    assert Subscription.objects.get(pk=webhook.pk).payload_filter["any"][0]["value"] == 12779
