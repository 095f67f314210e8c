"""Validation messages and refusals come in the reader's language (the language cookie, else
Accept-Language) in the admin and the API, while text a worker stores stays English."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import translation
from rest_framework.test import APIClient

from deliveries.models import Delivery, DeliveryStatus
from events.services import event_publish
from subscriptions.models import Subscription
from tests.conftest import ADMIN_PASSWORD
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.destinations import DestinationBlocked
from webhook_engine.errors import ErrorKind

NEW = {
    "name": "CRM",
    "url": "https://crm.example.org/hooks",
    "topics": ["course.*"],
    "content_type": "json",
}
# Fails on an event without a score: divisibleby cannot take null.
FAILING_TEMPLATE = '{"even": {{ data.score|divisibleby:"2"|yesno:"true,false" }}}'


def _api(key: str, language: str) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE=language)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fr-FR,fr;q=0.9", "La valeur de X-Token ne peut pas contenir de saut de ligne."),
        ("de-DE,de;q=0.9", "Der Wert von X-Token darf keine Zeilenumbrüche enthalten."),
        ("en-GB,en;q=0.9", "The value of X-Token cannot contain line breaks."),
    ],
)
def test_an_api_400_speaks_the_accept_language(school_key, language, expected):
    response = _api(school_key, language).post(
        "/api/v1/subscriptions/",
        {**NEW, "custom_headers": {"X-Token": "a\nb"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["errors"]["custom_headers"] == [expected]
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_a_blocked_destination_is_refused_in_the_readers_language(school_key):
    french = _api(school_key, "fr").post(
        "/api/v1/subscriptions/", {**NEW, "url": "http://10.0.0.1/hooks"}, format="json"
    )
    german = _api(school_key, "de").post(
        "/api/v1/subscriptions/", {**NEW, "url": "http://10.0.0.1/hooks"}, format="json"
    )

    assert french.json()["errors"]["url"] == [
        "10.0.0.1 est une adresse de réseau privé\xa0; les webhooks ne sont envoyés qu’à des "
        "adresses publiques."
    ]
    assert german.json()["errors"]["url"] == [
        "10.0.0.1 ist eine Adresse eines privaten Netzes; Webhooks werden nur an öffentliche "
        "Adressen gesendet."
    ]
    assert Subscription.objects.count() == 0


def test_a_blocked_destination_keeps_an_english_str_for_the_attempt_log():
    blocked = DestinationBlocked("intranet.example.org", "10.0.0.1", "a private-network address")

    with translation.override("fr"):
        stored, shown = str(blocked), blocked.message()

    assert stored == (
        "intranet.example.org resolves to 10.0.0.1, which is a private-network address; "
        "webhooks are only sent to public addresses."
    )
    assert shown == (
        "intranet.example.org pointe vers 10.0.0.1, qui est une adresse de réseau privé\xa0; "
        "les webhooks ne sont envoyés qu’à des adresses publiques."
    )


@pytest.mark.django_db
def test_an_unknown_key_is_refused_in_the_language_of_the_cookie(school):
    client = APIClient(HTTP_ACCEPT_LANGUAGE="fr")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"  # the user's choice wins
    client.credentials(HTTP_AUTHORIZATION="Bearer whk_not-a-key")

    response = client.get("/api/v1/subscriptions/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Der API-Schlüssel ist ungültig oder wurde widerrufen."}


@pytest.mark.django_db
def test_publish_refusals_and_the_413_speak_french(platform_key, school, settings):
    client = _api(platform_key, "fr")
    unknown = client.post(
        "/api/v1/events/",
        {"school": school.slug, "type": "grade.given", "data": {}},
        format="json",
    )
    settings.WEBHOOKS_INGEST_MAX_BYTES = 1000
    too_large = client.post(
        "/api/v1/events/",
        {"school": school.slug, "type": "course.created", "data": {"blob": "x" * 2000}},
        format="json",
    )

    assert unknown.status_code == 400
    assert unknown.json()["errors"]["type"] == [
        "Type d’événement inconnu 'grade.given'\xa0: il n’est pas dans le catalogue des événements."
    ]
    assert too_large.status_code == 413
    assert too_large.json() == {"detail": "Le corps de la requête dépasse 1000 octets."}


@pytest.mark.django_db
def test_the_admin_form_shows_engine_errors_in_the_users_language(school, school_admin):
    client = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    client.force_login(school_admin)

    page = client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "CRM",
            "url": "http://127.0.0.1:9/hooks",
            "topics_patterns": "course.created",
            "content_type": "json",
            "body_template": "{% load static %}",
        },
    ).content.decode()

    assert (
        "Zeile 1: Das Tag {% load %} kann in einem Webhook-Body nicht verwendet werden; die "
        "Tags sind"
    ) in page
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_the_login_limit_speaks_french(school_admin, settings):
    settings.WEBHOOKS_ADMIN_LOGIN_FAILURES = 1
    french = Client(HTTP_ACCEPT_LANGUAGE="fr")

    def login(password: str):
        return french.post(
            "/admin/login/?next=/admin/",
            {"username": "ada", "password": password, "next": "/admin/"},
            REMOTE_ADDR="192.0.2.1",
        )

    login("guess")
    login("guess again")
    refused = login(ADMIN_PASSWORD)

    assert refused.status_code == 429
    assert (
        "Trop de connexions échouées pour ce compte ou depuis cette adresse. Réessayez dans 15 "
        "minutes."
    ) in refused.content.decode()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_stores_english_while_the_api_shows_the_same_problem_in_french(
    worker_process, quiet_workers_before_flush, catalog, receiver, platform_key
):
    school = SchoolFactory(language="fr")
    broken = SubscriptionFactory(
        school=school, url=receiver.url("/broken"), body_template=FAILING_TEMPLATE
    )

    # Published by a French-speaking client; fanned out by the worker, which has no language.
    response = _api(platform_key, "fr").post(
        "/api/v1/events/",
        {"school": school.slug, "type": "course.created", "data": {"course": {"id": "c1"}}},
        format="json",
    )
    assert response.status_code == 202
    deadline = time.monotonic() + 20
    while not Delivery.objects.filter(subscription=broken).exists():
        assert time.monotonic() < deadline, "the worker did not fan the event out"
        time.sleep(0.05)
    delivery = Delivery.objects.get(subscription=broken)

    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error_kind == ErrorKind.TEMPLATE
    assert "The template failed on this event's data: " in delivery.last_error
    assert receiver.received() == []
    # The same template checked for a person: their language.
    preview = _api_for_school(school, "fr").post(
        f"/api/v1/subscriptions/{broken.pk}/preview/",
        {"event_type": "course.created"},
        format="json",
    )
    assert preview.status_code == 400
    [message] = preview.json()["errors"]["body_template"]
    assert message.startswith("Le modèle a échoué sur les données de cet événement\xa0: ")


def _api_for_school(school, language: str) -> APIClient:
    from schools.services import api_key_create

    return _api(api_key_create(school=school, name="Tests")[1], language)


def test_the_event_publish_service_called_by_code_speaks_english(db, school):
    # No request, no active language: what a worker or the platform's Python call gets.
    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, type="course.created", data={"at": "9999-12-31T23:00:00Z"})

    assert raised.value.message_dict == {
        "data": [
            "data.at is outside the dates every time zone can show (0001-01-02 to 9999-12-30 UTC)."
        ]
    }


@pytest.mark.django_db
def test_a_page_that_does_not_exist_says_so_in_the_browsers_language():
    page = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").get("/no-such-page/")
    api = Client(HTTP_ACCEPT_LANGUAGE="fr").get("/api/no-such-endpoint/")

    assert page.status_code == 404
    assert "<h1>Nicht gefunden (404)</h1>" in page.content.decode()
    assert api.status_code == 404
    assert api.json() == {"detail": "Introuvable."}


@pytest.mark.django_db
def test_a_webhook_or_delivery_the_api_does_not_find_is_not_found_in_the_readers_language(
    school_key,
):
    missing = "00000000-0000-4000-8000-000000000000"
    french = _api(school_key, "fr")
    german = _api(school_key, "de")

    webhook = french.get(f"/api/v1/subscriptions/{missing}/")
    delivery = german.get(f"/api/v1/deliveries/{missing}/")

    assert (webhook.status_code, webhook.json()) == (404, {"detail": "Introuvable."})
    assert (delivery.status_code, delivery.json()) == (404, {"detail": "Nicht gefunden."})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fr",
            "La clé 'c-1-start' est déjà utilisée par un événement course.started (annulé) "
            "prévu le 2030-03-26T07:00:00+00:00, avec un autre type, d’autres données ou une "
            "autre heure\xa0: déplacez ou annulez plutôt celui-là.",
        ),
        (
            "de",
            "Der Schlüssel 'c-1-start' wird bereits von einem Ereignis course.started "
            "(abgebrochen) verwendet, fällig am 2030-03-26T07:00:00+00:00, mit anderem Typ, "
            "anderen Daten oder anderer Zeit: Verschieben oder stornieren Sie stattdessen jenes.",
        ),
    ],
)
def test_a_scheduled_event_keys_conflict_names_its_status_in_the_readers_language(
    platform_key, school, language, expected
):
    # Given a course start scheduled under a key, then cancelled
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": {"course": {"id": "c-1"}},
        "due_at": "2030-03-26T07:00:00+00:00",
        "key": "c-1-start",
    }
    created = _api(platform_key, language).post("/api/v1/scheduled-events/", body, format="json")
    _api(platform_key, language).delete(f"/api/v1/scheduled-events/{created.json()['id']}/")

    # When the key is used again for another time
    again = _api(platform_key, language).post(
        "/api/v1/scheduled-events/", {**body, "due_at": "2030-03-26T08:00:00+00:00"}, format="json"
    )

    # Then the 409 says which state the first one is in, in the reader's words
    assert again.status_code == 409
    assert again.json() == {"errors": {"key": [expected]}}
