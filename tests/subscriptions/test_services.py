import socket
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from subscriptions.models import Subscription
from subscriptions.selectors import signing_secret_current
from subscriptions.services import subscription_create, subscription_save, subscription_update
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_a_subscription_is_created_with_its_own_signing_secret(school):
    first = subscription_create(
        school=school, name="CRM", url="https://crm.example.org/hooks", topics=["course.*"]
    )
    second = subscription_create(
        school=school, name="ERP", url="https://erp.example.org/hooks", topics=["*"]
    )

    assert signing_secret_current(subscription=first).startswith("whsec_")
    assert signing_secret_current(subscription=first) != signing_secret_current(subscription=second)
    assert Subscription.objects.get(pk=first.pk).topics == ["course.*"]


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        ([], "Choose at least one topic."),
        (["course.exploded"], "'course.exploded' matches no event type in the catalog."),
        (["Course.Created"], "'Course.Created' is not a topic pattern"),
        (["course.*", "course.*"], "Each topic can be listed only once."),
    ],
)
def test_topics_that_match_nothing_or_are_malformed_are_refused(school, topics, message):
    with pytest.raises(ValidationError) as raised:
        subscription_create(
            school=school, name="CRM", url="https://crm.example.org/", topics=topics
        )

    assert any(message in error for error in raised.value.message_dict["topics"])
    assert Subscription.objects.count() == 0


def test_a_url_that_is_not_a_url_and_a_duplicate_name_are_refused(school):
    subscription_create(school=school, name="CRM", url="https://crm.example.org/", topics=["*"])

    with pytest.raises(ValidationError) as raised:
        subscription_create(school=school, name="CRM", url="not a url", topics=["*"])

    assert raised.value.message_dict["url"] == ["Enter a valid URL."]
    assert "__all__" in raised.value.message_dict  # name already used in this school
    assert Subscription.objects.count() == 1


def test_saving_an_edited_subscription_keeps_its_secret(school):
    subscription = SubscriptionFactory(school=school, url="https://old.example.org/hook")

    subscription.url = "https://new.example.org/hook"
    subscription_save(subscription=subscription)

    subscription.refresh_from_db()
    assert signing_secret_current(subscription=subscription) == subscription.secret
    assert subscription.url == "https://new.example.org/hook"


def test_re_enabling_clears_the_disabled_reason(school):
    subscription = SubscriptionFactory(
        school=school,
        url="https://crm.example.org/hook",
        is_active=False,
        disabled_reason="Receiver gone.",
    )

    subscription_update(subscription=subscription, is_active=True)

    subscription.refresh_from_db()
    assert subscription.is_active is True
    assert subscription.disabled_reason == ""


def _during_lookup(resolver, monkeypatch, name: str, meanwhile) -> list:
    """Run ``meanwhile`` on another connection while ``name`` is first resolved; returns what
    it returned, then "again" for each later lookup of ``name``."""
    real = resolver.getaddrinfo
    seen: list = []

    def getaddrinfo(host, *args, **kwargs):
        if host == name and seen:
            seen.append("again")
        elif host == name:
            result: list = []

            def other_request() -> None:
                try:
                    result.append(meanwhile())
                finally:
                    connection.close()

            thread = threading.Thread(target=other_request)
            thread.start()
            thread.join(10)
            seen.append(result[0] if result else None)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


@pytest.mark.django_db(transaction=True)
def test_an_update_does_not_hold_the_webhook_while_its_new_url_resolves(
    school, resolver, monkeypatch
):
    """The engine writes a webhook's row (its failure streak, a disable) while it delivers: a
    host name that takes seconds to resolve must not keep it waiting."""
    subscription = SubscriptionFactory(school=school, url="https://crm.example.org/hooks")

    def row_free() -> bool:
        with transaction.atomic():
            rows = Subscription.objects.select_for_update(nowait=True).filter(pk=subscription.pk)
            try:
                return rows.exists()
            except DatabaseError:
                return False

    seen = _during_lookup(resolver, monkeypatch, "new.example.org", row_free)

    subscription_update(subscription=subscription, url="https://new.example.org/hooks")

    assert seen == [True]  # resolved once, the row free meanwhile
    assert Subscription.objects.get(pk=subscription.pk).url == "https://new.example.org/hooks"


@pytest.mark.django_db(transaction=True)
def test_settings_another_request_changes_meanwhile_are_kept_and_checked_again(
    school, resolver, monkeypatch
):
    subscription = SubscriptionFactory(school=school, url="https://crm.example.org/hooks")

    def renamed() -> int:
        return Subscription.objects.filter(pk=subscription.pk).update(name="Renamed meanwhile")

    seen = _during_lookup(resolver, monkeypatch, "new.example.org", renamed)

    subscription_update(subscription=subscription, url="https://new.example.org/hooks")

    stored = Subscription.objects.get(pk=subscription.pk)
    assert (stored.name, stored.url) == ("Renamed meanwhile", "https://new.example.org/hooks")
    assert seen == [1, "again"]  # checked again under the lock
