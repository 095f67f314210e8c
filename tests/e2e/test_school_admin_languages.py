"""A school admin's day in French and in German, in a real browser, every element found by its
visible label: add a webhook (a wrong form first: every problem at once, the password kept),
Send Test from the Add page with the unsaved settings, see the failure on the home page's
chart, send a retrying delivery now, read the audit trail. Support staff do the same two
things (send now, audit trail) and see no secret.

With ``UPDATE_SCREENSHOTS=1`` the French run writes the README's French screenshots at 1280 px
and 390 px.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.models import Delivery, DeliveryStatus
from events.models import EventType
from events.services import event_publish
from subscriptions.models import Subscription
from tests.conftest import ADMIN_PASSWORD
from tests.deliveries.factories import delivery_create
from tests.receiver import Reply
from webhook_engine.errors import ErrorKind

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class Words:
    """What the admin says in one language (the labels the test looks for)."""

    locale: str
    username: str
    password_login: str
    log_in: str
    add_webhook: str
    webhook_name: str
    url: str
    find_type: str
    content_xml: str
    yes: str
    username_field: str
    password: str
    save: str
    errors: str
    required: str
    topic: str
    send_test: str
    test_result: str
    added: str
    home: str
    chart: str
    failed: str
    failed_total: str
    deliveries: str
    retrying: str
    send_now: str
    sending: str
    delivered: str
    by_hand: str
    audit: str
    sent_again: str
    created: str
    secret_hidden: str


FRENCH = Words(
    locale="fr-FR",
    username="Nom d’utilisateur",
    password_login="Mot de passe",
    log_in="Connexion",
    add_webhook="Ajouter webhook",
    webhook_name="Nom du webhook",
    url="URL",
    find_type="Chercher un type d’événement",
    content_xml="XML (application/xml)",
    yes="Oui",
    username_field="Nom d’utilisateur",
    password="Mot de passe",
    save="Enregistrer",
    errors="Corrigez les erreurs ci-dessous.",
    required="Ce champ est obligatoire.",
    topic="Sujet",
    send_test="Envoyer un test",
    test_result="Résultat du test",
    added="Le webhook «\xa0CRM\xa0» a été ajouté.",
    home="Vue d’ensemble",
    chart="Envois par heure, dernières 24 heures",
    failed="Échec",
    failed_total="Échec\u00a0: 1",
    deliveries="Envois",
    retrying="Nouvel essai",
    send_now="Envoyer maintenant",
    sending="Envoi en cours",
    delivered="Remis",
    by_hand="Envoyé à la main",
    audit="Entrées du journal d’audit",
    sent_again="Envoi renvoyé",
    created="Webhook créé",
    secret_hidden="Masqué\xa0: seuls les administrateurs",
)

GERMAN = Words(
    locale="de-DE",
    username="Benutzername",
    password_login="Passwort",
    log_in="Anmelden",
    add_webhook="Webhook hinzufügen",
    webhook_name="Name des Webhooks",
    url="URL",
    find_type="Ereignistyp suchen",
    content_xml="XML (application/xml)",
    yes="Ja",
    username_field="Benutzername",
    password="Passwort",
    save="Sichern",
    errors="Bitte die unten aufgeführten Fehler korrigieren.",
    required="Dieses Feld ist zwingend erforderlich.",
    topic="Thema",
    send_test="Test senden",
    test_result="Testergebnis",
    added="Der Webhook „CRM“ wurde angelegt.",
    home="Übersicht",
    chart="Zustellungen pro Stunde, letzte 24 Stunden",
    failed="Fehlgeschlagen",
    failed_total="Fehlgeschlagen: 1",
    deliveries="Zustellungen",
    retrying="Wird wiederholt",
    send_now="Jetzt senden",
    sending="Wird jetzt gesendet",
    delivered="Zugestellt",
    by_hand="Von Hand gesendet",
    audit="Audit-Einträge",
    sent_again="Zustellung erneut gesendet",
    created="Webhook angelegt",
    secret_hidden="Verborgen: Nur die Administratoren",
)


def _label(text: str) -> re.Pattern[str]:
    """A form label as the admin shows it: the text, then the language's label suffix (": "
    in English and German, " :" in French)."""
    return re.compile(rf"^\s*{re.escape(text)}\s*:?\s*$")


def _wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def _log_in(page: Page, live_server, words: Words, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label(_label(words.username)).fill(username)
    page.get_by_label(_label(words.password_login)).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name=words.log_in).click()
    expect(page.get_by_role("heading", name=words.home)).to_be_visible()


def _screenshot(page: Page, screenshots, name: str, words: Words, width: int) -> None:
    if words is FRENCH:
        page.screenshot(path=screenshots / f"fr-{name}-{width}.png", full_page=width < 800)


def _day(words, live_server, browser, worker_process, receiver, school, screenshots):
    receiver.script("/crm", default=Reply(status=202, body=b"<ok/>"))
    context = browser.new_context(locale=words.locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _log_in(page, live_server, words, "ada")

    # A wrong form: every problem at once, and the password is still there.
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    page.get_by_role("link", name=words.add_webhook).click()
    page.get_by_label(_label(words.url)).fill("http://10.1.2.3/hook")
    page.get_by_label(words.find_type).fill("course.created")
    page.get_by_label("course.created").check()
    page.get_by_label(words.content_xml).check()
    page.get_by_label(_label(words.yes)).check()
    page.get_by_label(_label(words.username_field)).fill("crm")
    page.get_by_label(_label(words.password)).fill("s3cret-pw")
    page.get_by_role("button", name=words.save, exact=True).click()
    expect(page.locator(".errornote")).to_contain_text(words.errors)
    expect(page.locator(".field-name .errorlist")).to_contain_text(words.required)
    expect(page.locator(".field-url .errorlist")).to_contain_text("10.1.2.3")
    expect(page.get_by_label(_label(words.password))).to_have_value("s3cret-pw")
    if words is FRENCH:
        page.screenshot(path=screenshots / "fr-webhook-form-errors-1280.png", full_page=True)

    # Put it right, then Send Test from the Add page: the unsaved settings go out.
    page.get_by_label(_label(words.webhook_name)).fill("CRM")
    page.get_by_label(_label(words.url)).fill(receiver.url("/crm"))
    page.get_by_label(_label(words.topic)).select_option("course.created")
    page.get_by_role("button", name=words.send_test).click()
    result = page.get_by_role("region", name=words.test_result)
    expect(result).to_contain_text("202")
    [sent] = receiver.received("/crm")
    assert sent.headers["content-type"] == "application/xml"
    assert not Subscription.objects.exists()
    expect(page.get_by_label(_label(words.password))).to_have_value("s3cret-pw")
    _screenshot(page, screenshots, "send-test-add-page", words, 1280)
    page.get_by_role("button", name=words.save, exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text(words.added)
    subscription = Subscription.objects.get(name="CRM")
    assert (subscription.content_type, subscription.basic_auth_enabled) == ("xml", True)

    # The receiver breaks: the failure shows on the home page's chart.
    receiver.script("/crm", default=Reply(status=500, body=b"database is down"))
    sample = EventType.objects.get(key="course.created").sample_payload
    with transaction.atomic():
        event = event_publish(school=school, type="course.created", data=sample)
    _wait_for(lambda: Delivery.objects.filter(event=event, status=DeliveryStatus.FAILED).exists())
    page.goto(f"{live_server.url}/admin/")
    chart = page.get_by_role("figure", name=words.chart)
    expect(chart).to_contain_text(words.failed_total)
    expect(page.locator("#attention")).to_contain_text("CRM")
    _screenshot(page, screenshots, "home", words, 1280)

    # A delivery waiting between automatic retries: send it now.
    receiver.script("/crm", default=Reply(status=200, body=b"<ok>again</ok>"))
    waiting = delivery_create(
        subscription,
        status=DeliveryStatus.PENDING,
        attempts=2,
        next_attempt_at=timezone.now() + dt.timedelta(hours=1),
        last_response_status=503,
        last_error_kind=ErrorKind.HTTP_STATUS,
    )
    page.goto(f"{live_server.url}/admin/deliveries/delivery/")
    page.locator("#changelist-filter").get_by_role("link", name=words.retrying, exact=True).click()
    _screenshot(page, screenshots, "deliveries", words, 1280)
    page.locator("#result_list tbody tr").first.locator("th a").click()
    page.get_by_role("button", name=words.send_now).click()
    expect(page.locator(".messagelist")).to_contain_text(words.sending)
    _wait_for(
        lambda: Delivery.objects.filter(pk=waiting.pk, status=DeliveryStatus.DELIVERED).exists()
    )
    page.reload()
    expect(page.locator(".field-status_detail")).to_contain_text(words.delivered)
    expect(page.locator("#attempt-3")).to_contain_text(words.by_hand)
    _screenshot(page, screenshots, "delivery-detail", words, 1280)

    # The audit trail says who did it.
    page.locator("#nav-sidebar").get_by_role("link", name=words.audit, exact=True).click()
    rows = page.locator("#result_list tbody")
    expect(rows).to_contain_text(words.sent_again)
    expect(rows).to_contain_text(words.created)
    expect(rows).to_contain_text("ada")
    _screenshot(page, screenshots, "audit", words, 1280)
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/")
    _screenshot(page, screenshots, "webhooks", words, 1280)

    # On a phone: the same pages, each row a card with its status first.
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path in (
        ("home", "/admin/"),
        ("webhooks", "/admin/subscriptions/subscription/"),
        ("deliveries", "/admin/deliveries/delivery/"),
    ):
        page.goto(f"{live_server.url}{path}")
        _screenshot(page, screenshots, name, words, 390)
        # Nothing makes the page scroll sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
    first_card = page.locator("#result_list tbody tr").first
    expect(first_card.locator("td").first).to_be_visible()
    context.close()
    return subscription, waiting


def test_a_french_school_admins_day(
    live_server, browser, worker_process, receiver, school, school_admin, screenshots
):
    _day(FRENCH, live_server, browser, worker_process, receiver, school, screenshots)


def test_a_german_school_admins_day_and_support_staff_who_see_no_secret(
    live_server, browser, worker_process, receiver, school, school_admin, support_user,
    screenshots,
):  # fmt: skip
    subscription, _waiting = _day(
        GERMAN, live_server, browser, worker_process, receiver, school, screenshots
    )
    failed = Delivery.objects.filter(subscription=subscription, status="failed").first()
    assert failed is not None

    context = browser.new_context(locale=GERMAN.locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _log_in(page, live_server, GERMAN, "sam")
    page.goto(f"{live_server.url}/admin/deliveries/delivery/{failed.pk}/change/")
    page.get_by_role("button", name=GERMAN.send_now).click()
    expect(page.locator(".messagelist")).to_contain_text(GERMAN.sending)
    page.goto(f"{live_server.url}/admin/subscriptions/subscription/{subscription.pk}/change/")
    expect(page.locator("body")).to_contain_text(GERMAN.secret_hidden)
    expect(page.locator("body")).not_to_contain_text("whsec_")
    expect(page.locator("body")).not_to_contain_text("s3cret-pw")
    page.locator("#nav-sidebar").get_by_role("link", name=GERMAN.audit, exact=True).click()
    expect(page.locator("#result_list tbody")).to_contain_text("sam")
    assert re.search(r"whsec_[A-Za-z0-9+/=]{20,}", page.content()) is None
    context.close()
