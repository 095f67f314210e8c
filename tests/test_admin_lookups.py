"""Admin lists given query strings they cannot apply, and a form error in the reader's language."""

from __future__ import annotations

import pytest
from django.test import Client

from schools.models import ApiKey
from schools.services import api_key_create
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(school, other_school, school_admin):
    for owner, name in ((school, "CRM"), (other_school, "ERP")):
        delivery_create(SubscriptionFactory(school=owner, name=name))


# Lookups Django builds without complaint but the database (or the driver) cannot run.
UNRUNNABLE = [
    ("/admin/subscriptions/subscription/", {"name__regex": "("}),
    ("/admin/deliveries/delivery/", {"event_type__iregex": "["}),
    ("/admin/deliveries/delivery/", {"attempts__in": "99999999999999999999"}),
    ("/admin/deliveries/delivery/", {"attempts__range": "1"}),
    ("/admin/audit/auditentry/", {"created_at__year": "99999999999999999999"}),
    ("/admin/events/event/", {"created_at__iso_year": "99999999999"}),
    ("/admin/schools/apikey/", {"name__regex": "("}),
]


@pytest.mark.parametrize(("url", "query"), UNRUNNABLE)
def test_a_list_given_a_lookup_the_database_cannot_run_answers_without_a_500(
    world, school_admin, url, query
):
    client = Client(HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)
    client.force_login(school_admin)

    response = client.get(url, query)

    assert response.status_code == 302, response.status_code
    assert response["Location"] == f"{url}?e=1"


@pytest.mark.parametrize("export_format", ["csv", "json"])
@pytest.mark.parametrize("query", [{"event_type__regex": "("}, {"attempts__in": "9" * 20}])
def test_an_export_given_a_lookup_the_database_cannot_run_answers_without_a_500(
    world, school_admin, export_format, query
):
    client = Client(HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)
    client.force_login(school_admin)

    response = client.get(f"/admin/deliveries/delivery/export/{export_format}/", query)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/deliveries/delivery/?")


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("/admin/deliveries/delivery/", {"created_at__gte": "garbage"}),
        ("/admin/subscriptions/subscription/", {"school__id__exact": "abc"}),
        ("/admin/audit/auditentry/", {"created_at__lt": "2020-13-45"}),
    ],
)
def test_a_filter_the_list_cannot_apply_is_said_not_silently_dropped(
    client, world, school_admin, url, query
):
    client.force_login(school_admin)

    response = client.get(url, query, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(f"{url}?e=1", 302)]
    shown = [str(m) for m in response.context["messages"]]
    assert any(next(iter(query)) in text for text in shown), shown


def test_the_api_key_limit_error_of_the_form_is_in_the_readers_language(school, school_admin):
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    client.force_login(school_admin)
    for number in range(5):
        api_key_create(school=school, name=f"Key {number}")

    response = client.post("/admin/schools/apikey/add/", {"school": school.pk, "name": "CRM"})

    text = response.content.decode()
    assert "Lycée Victor Hugo a déjà 5 clés d’API actives" in text
    assert "already has 5 active API keys" not in text
    assert ApiKey.objects.count() == 5


@pytest.mark.parametrize(
    "url",
    [
        "/admin/auth/user/?username__regex=(",
        "/admin/auth/group/?name__regex=(",
        "/admin/django_celery_beat/periodictask/?name__regex=(",
    ],
)
def test_djangos_own_lists_given_a_lookup_the_database_cannot_run_answer_without_a_500(
    admin_client, url
):
    response = admin_client.get(url)

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")
