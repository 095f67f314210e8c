"""Support staff tick a failed delivery in the log and choose "Send the selected deliveries
now" after its webhook was deleted meanwhile: the log says nothing was sent and why, rather than
a confirmation page that asks nothing."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.deliveries.factories import delivery_create
from tests.e2e.conftest import log_in
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_sending_a_selection_deleted_meanwhile_says_nothing_was_sent(
    live_server, page, school, support_user
):
    webhook = SubscriptionFactory(school=school, name="Moodle")
    delivery_create(webhook)

    log_in(page, live_server, "sam")
    page.goto(f"{live_server.url}/admin/deliveries/delivery/")
    page.get_by_role("checkbox", name="Select this object for an action").first.check()
    page.get_by_role("combobox", name="Action").select_option(
        label="Send the selected deliveries now"
    )
    webhook.delete()  # by its school's admin, while the log was open
    page.get_by_role("button", name="Go", exact=True).click()

    expect(page.locator("ul.messagelist")).to_have_text(
        "None of the selected deliveries is in the log any more (deleted with their webhook, "
        "or pruned): nothing was sent."
    )
    expect(page.get_by_role("button", name="Yes, send 1 now")).to_have_count(0)
