"""A webhook another admin deletes while this admin's page or action is acting on it: the
answer is the one a page of a deleted webhook gives (404), or the action goes on with the
others, never a server error."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from deliveries import admin as deliveries_admin
from deliveries.models import Delivery
from subscriptions.admin import pages as pages_admin
from subscriptions.admin import webhooks as webhooks_admin
from subscriptions.models import SigningSecret, Subscription
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _deleted_first(monkeypatch, module: Any, name: str, webhook: Subscription) -> None:
    """``module.name`` (a service the page calls after looking the webhook up) runs after
    another admin deleted ``webhook`` (on another connection, committed)."""
    real = getattr(module, name)
    done: list[bool] = []

    def other_admin_deletes() -> None:
        try:
            Subscription.objects.filter(pk=webhook.pk).delete()
        finally:
            connection.close()

    def deleted_first(**kwargs: Any) -> Any:
        if not done:
            done.append(True)
            thread = threading.Thread(target=other_admin_deletes)
            thread.start()
            thread.join(10)
        return real(**kwargs)

    monkeypatch.setattr(module, name, deleted_first)


@pytest.mark.parametrize(
    ("page", "service", "form"),
    [
        ("rotate-secret", "subscription_secret_rotate", {}),
        ("enable", "subscription_enable", {}),
        ("replay", "deliveries_replay", {"confirm": "yes"}),
    ],
)
def test_a_page_acting_on_a_webhook_deleted_meanwhile_is_a_404(
    client, school, school_admin, monkeypatch, page, service, form
):
    client.force_login(school_admin)
    webhook = SubscriptionFactory(
        school=school, name="CRM", topics=["*"], is_active=page != "enable"
    )
    _deleted_first(monkeypatch, pages_admin, service, webhook)

    response = client.post(f"/admin/subscriptions/subscription/{webhook.pk}/{page}/", form)

    assert response.status_code == 404
    assert not Subscription.objects.filter(pk=webhook.pk).exists()


@pytest.mark.parametrize(
    ("action", "service"),
    [
        ("rotate_secrets", "subscription_secret_rotate"),
        ("enable_selected", "subscription_enable"),
    ],
)
def test_an_action_on_webhooks_one_of_which_is_deleted_meanwhile_does_the_others(
    client, school, school_admin, monkeypatch, action, service
):
    client.force_login(school_admin)
    active = action != "enable_selected"
    gone, kept = (
        SubscriptionFactory(school=school, name=name, topics=["*"], is_active=active)
        for name in ("A", "B")
    )
    secrets_before = SigningSecret.objects.filter(subscription=kept).count()
    _deleted_first(monkeypatch, webhooks_admin, service, gone)

    response = client.post(
        "/admin/subscriptions/subscription/",
        {"action": action, "_selected_action": [str(gone.pk), str(kept.pk)]},
    )

    assert response.status_code == 302
    kept.refresh_from_db()
    assert not Subscription.objects.filter(pk=gone.pk).exists()
    if action == "rotate_secrets":
        assert SigningSecret.objects.filter(subscription=kept).count() == secrets_before + 1
    else:
        assert kept.is_active


def test_re_enabling_and_sending_now_a_delivery_whose_webhook_is_deleted_meanwhile_is_a_404(
    client, school, school_admin, monkeypatch
):
    # Given a failed delivery of a disabled webhook, which another admin deletes while this one
    # re-enables it from the delivery's page
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM", topics=["*"], is_active=False)
    delivery = delivery_create(webhook)
    _deleted_first(monkeypatch, deliveries_admin, "subscription_enable", webhook)

    response = client.post(f"/admin/deliveries/delivery/{delivery.pk}/retrigger/", {"enable": "1"})

    # Then the answer is the 404 the delivery's page now gives (its log went with the webhook)
    assert response.status_code == 404
    assert not Delivery.objects.filter(pk=delivery.pk).exists()
