"""French puts a no-break space before a colon: wherever the admin writes "label: value", the
colon belongs to the translated text, so a French page reads "Échec : …" and an English or
German one "Failed: …"."""

from __future__ import annotations

import socket

import pytest
from django.test import Client
from django.utils import translation

from deliveries.models import Delivery
from subscriptions.forms import SubscriptionForm
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.filters import filter_errors

pytestmark = pytest.mark.django_db

NBSP = "\xa0"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client(user, language: str) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("language", "failed", "error", "request_line"),
    [
        ("en", "Failed: course.created", "Connection failed: ", "Request: POST "),
        ("de", "Fehlgeschlagen: course.created", "Verbindung fehlgeschlagen: ", "Anfrage: POST "),
        (
            "fr",
            f"Échec{NBSP}: course.created",
            f"Échec de connexion{NBSP}: ",
            f"Requête{NBSP}: POST ",
        ),
    ],
)
def test_a_failed_send_test_and_its_attempt_put_the_colon_as_the_language_does(
    school, school_admin, language, failed, error, request_line
):
    webhook = SubscriptionFactory(
        school=school, url=f"http://127.0.0.1:{_closed_port()}/hook", topics=["course.*"]
    )
    client = _client(school_admin, language)

    page = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/send-test/",
        {"event_type": "course.created"},
    ).content.decode()

    assert failed in page
    assert error in page
    delivery = Delivery.objects.get(subscription=webhook)
    detail = client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()
    assert request_line in detail


def test_every_payload_filter_problem_puts_its_place_before_the_colon_as_the_language_does():
    spec = {
        "all": [
            {"field": "course.id", "op": "eq"},
            {"field": "course.id", "op": "like", "value": 1},
        ]
    }

    with translation.override("fr"):
        french = filter_errors(spec)
    with translation.override("en"):
        english = filter_errors(spec)

    assert french == [
        f"all[0]{NBSP}: Une comparaison a besoin d’une valeur.",
        f'all[1]{NBSP}: "like" n’est pas une comparaison{NBSP}; utilisez l’une de '
        "eq, ne, in, not_in, gt, gte, lt, lte, contains, starts_with, ends_with, exists.",
    ]
    assert english == [
        "all[0]: A comparison needs a value.",
        'all[1]: "like" is not a comparison; use one of '
        "eq, ne, in, not_in, gt, gte, lt, lte, contains, starts_with, ends_with, exists.",
    ]


@pytest.mark.parametrize(
    ("language", "pointer"),
    [
        ("en", "The README's Payload filters section has the details."),
        ("fr", "La section «\xa0Payload filters\xa0» du README en donne le détail."),
        ("de", "Einzelheiten stehen im Abschnitt „Payload filters“ der README."),
    ],
)
def test_the_payload_filter_help_names_the_readme_section_as_the_language_does(language, pointer):
    with translation.override(language):
        help_text = str(SubscriptionForm.base_fields["payload_filter"].help_text)

    assert help_text.endswith(pointer)
