"""Send now from the delivery log on a selection that is not what the list showed: deliveries
gone since the page was read (deleted with their webhook, pruned) or ids of another school
typed into the form, and a selection over the limit."""

from __future__ import annotations

import pytest

from audit.models import AuditAction, AuditEntry
from deliveries.models import Delivery, DeliveryStatus
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

LOG = "/admin/deliveries/delivery/"
NOTHING = (
    "None of the selected deliveries is in the log any more (deleted with their webhook, or "
    "pruned): nothing was sent."
)


def _send_now(client, ids, **extra):
    action = {"action": "retrigger_selected", "index": "0", "_selected_action": ids, **extra}
    return client.post(LOG, action, follow=True)


def test_a_selection_deleted_since_the_list_was_read_says_so_instead_of_an_empty_question(
    client, school, support_user
):
    subscription = SubscriptionFactory(school=school)
    delivery = delivery_create(subscription)
    selected = [str(delivery.pk)]
    subscription.delete()  # its deliveries go with it
    client.force_login(support_user)

    asked = _send_now(client, selected)
    confirmed = _send_now(client, selected, confirm="yes")

    for response in (asked, confirmed):
        assert response.redirect_chain  # back to the log, not a confirmation page
        assert [str(m) for m in response.context["messages"]] == [NOTHING]


def test_another_schools_delivery_in_a_forged_form_is_neither_sent_nor_revealed(
    client, school, other_school_admin
):
    delivery = delivery_create(SubscriptionFactory(school=school))
    client.force_login(other_school_admin)

    asked = _send_now(client, [str(delivery.pk)])
    confirmed = _send_now(client, [str(delivery.pk)], confirm="yes")

    for response in (asked, confirmed):
        assert [str(m) for m in response.context["messages"]] == [NOTHING]
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.FAILED
    assert not AuditEntry.objects.filter(action=AuditAction.DELIVERY_RETRIGGERED).exists()


def test_select_all_over_the_limit_is_refused_with_the_limit_written_as_numbers_are(
    client, school, support_user
):
    subscription = SubscriptionFactory(school=school)
    deliveries = [delivery_create(subscription) for _ in range(1001)]
    client.force_login(support_user)

    refused = _send_now(client, [str(deliveries[0].pk)], select_across="1", confirm="yes")

    assert [str(m) for m in refused.context["messages"]] == [
        "More than 1,000 deliveries selected: narrow the filters, or use “Recover failed "
        "deliveries” on the webhook."
    ]
    assert not Delivery.objects.filter(status=DeliveryStatus.PENDING).exists()
    assert not AuditEntry.objects.filter(action=AuditAction.DELIVERY_RETRIGGERED).exists()

    deliveries[0].delete()
    asked = _send_now(client, [str(deliveries[1].pk)], select_across="1").content.decode()

    assert "Yes, send 1,000 now" in asked
    assert "… and 1,000 in all." in asked
