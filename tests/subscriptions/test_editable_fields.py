"""One list of a webhook's settings drives the service, the API and the admin form."""

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory

from subscriptions.forms import SubscriptionForm
from subscriptions.models import EDITABLE_FIELDS, Subscription
from subscriptions.serializers import SubscriptionInput, SubscriptionOutput
from subscriptions.services import subscription_create, subscription_update


def test_the_api_takes_and_returns_every_editable_setting():
    assert set(SubscriptionInput().fields) == {*EDITABLE_FIELDS, "basic_auth_password"}
    assert set(EDITABLE_FIELDS) <= set(SubscriptionOutput().fields)


def test_the_admin_form_and_its_pages_place_every_editable_setting(admin_user):
    request = RequestFactory().get("/")
    request.user = admin_user
    admin = site.get_model_admin(Subscription)

    placed = {
        name for _title, options in admin.get_fieldsets(request) for name in options["fields"]
    }

    assert set(EDITABLE_FIELDS) <= set(SubscriptionForm._meta.fields)
    assert set(EDITABLE_FIELDS) <= placed


@pytest.mark.django_db
def test_the_services_refuse_a_setting_that_is_not_editable(school):
    with pytest.raises(ValueError, match="failing_since"):
        subscription_create(school=school, name="A", url="http://127.0.0.1/", failing_since=None)
    subscription = subscription_create(
        school=school, name="A", url="http://127.0.0.1/", topics=["*"]
    )
    with pytest.raises(ValueError, match="school"):
        subscription_update(subscription=subscription, school=None)
