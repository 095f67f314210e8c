import json

import pytest

from subscriptions.models import Subscription
from subscriptions.selectors import signing_secret_current

pytestmark = pytest.mark.django_db


def test_a_webhook_added_in_the_admin_gets_a_signing_secret(admin_client, school):
    response = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "CRM",
            "url": "https://crm.example.org/hooks",
            "topics": json.dumps(["course.*"]),
            "content_type": "json",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    subscription = Subscription.objects.get(name="CRM")
    assert signing_secret_current(subscription=subscription).startswith("whsec_")
    assert subscription.topics == ["course.*"]


def test_the_admin_form_refuses_topics_outside_the_catalog(admin_client, school):
    response = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "CRM",
            "url": "https://crm.example.org/hooks",
            "topics": json.dumps(["grades.*"]),
            "content_type": "json",
        },
    )

    assert response.status_code == 200
    assert "&#x27;grades.*&#x27; matches no event type in the catalog." in response.text
    assert Subscription.objects.count() == 0


def test_the_admin_form_shows_the_services_errors_instead_of_failing(admin_client, school):
    response = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "CRM",
            "url": "http://127.0.0.1:9/hooks",  # allowed in tests; the header is what is wrong
            "topics": json.dumps(["course.*"]),
            "content_type": "json",
            "custom_headers": json.dumps({"Host": "evil.example"}),
            "basic_auth_enabled": "on",
            "basic_auth_username": "crm",
        },
    )

    assert response.status_code == 200
    assert "Host is set by the webhook itself and cannot be a custom header." in response.text
    assert "Enter the password for basic authentication." in response.text
    assert Subscription.objects.count() == 0
