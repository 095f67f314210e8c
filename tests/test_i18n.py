"""The admin's language: the user's choice, else the browser's, else the school's; dates in
the language's format and in the school's time zone, named."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _page(school_admin, path="/admin/", **headers) -> str:
    client = Client(**headers)
    client.force_login(school_admin)
    return client.get(path).content.decode()


def test_the_browsers_language_wins_over_the_schools(school_admin):
    german = _page(school_admin, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5")

    assert '<html lang="de"' in german
    assert "Übersicht" in german


def test_without_a_language_the_browser_speaks_the_school_speaks(school_admin):
    # Spanish is not one of the admin's languages: the school's (French) is used.
    spanish = _page(school_admin, HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9")
    nothing = _page(school_admin)

    assert '<html lang="fr"' in spanish
    assert '<html lang="fr"' in nothing
    assert "Vue d’ensemble" in nothing


def test_the_users_choice_in_the_language_menu_wins(school_admin):
    client = Client(HTTP_ACCEPT_LANGUAGE="fr-FR")
    client.force_login(school_admin)

    chosen = client.post("/i18n/setlang/", {"language": "de", "next": "/admin/"})
    page = client.get("/admin/").content.decode()

    assert chosen.status_code == 302
    assert '<html lang="de"' in page
    assert '<option value="de" lang="de" selected>Deutsch</option>' in page


def test_times_are_in_the_rows_schools_zone_named_and_formatted_per_language(school, school_admin):
    subscription = SubscriptionFactory(school=school, name="CRM")
    delivery = delivery_create(subscription)
    summer = dt.datetime(2026, 7, 14, 8, 5, 9, tzinfo=dt.UTC)
    type(delivery).objects.filter(pk=delivery.pk).update(created_at=summer)

    french = _page(school_admin, "/admin/deliveries/delivery/", HTTP_ACCEPT_LANGUAGE="fr")
    german = _page(school_admin, "/admin/deliveries/delivery/", HTTP_ACCEPT_LANGUAGE="de")
    english = _page(school_admin, "/admin/deliveries/delivery/", HTTP_ACCEPT_LANGUAGE="en")

    # 08:05:09 UTC is 10:05:09 in Paris in July (CEST).
    assert ">14/07/2026 10:05:09 CEST</time>" in french
    assert ">14.07.2026 10:05:09 CEST</time>" in german
    assert ">07/14/2026 10:05:09 CEST</time>" in english
    assert 'title="Europe/Paris"' in french


def test_an_action_on_an_id_that_is_not_one_answers_with_a_message_not_an_error(
    client, school, school_admin
):
    client.force_login(school_admin)
    delivery_create(SubscriptionFactory(school=school))

    response = client.post(
        "/admin/deliveries/delivery/",
        {"action": "retrigger_selected", "index": "0", "_selected_action": ["not-a-uuid"]},
        follow=True,
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "'not-a-uuid': not an id of this list; nothing was done."
    ]


def test_the_webhook_page_speaks_the_readers_language_around_the_vendors_names(
    school, school_admin
):
    subscription = SubscriptionFactory(school=school)

    french = _page(
        school_admin,
        f"/admin/subscriptions/subscription/{subscription.pk}/change/",
        HTTP_ACCEPT_LANGUAGE="fr-FR",
    )
    german = _page(
        school_admin, "/admin/subscriptions/subscription/add/", HTTP_ACCEPT_LANGUAGE="de-DE"
    )

    # The delivery profile's section, its help and the body presets.
    assert '<h2 id="fieldset-0-2-heading" class="fieldset-heading">Profil</h2>' in french
    assert f"le client ID est l’identifiant de ce webhook, <code>{subscription.pk}</code>" in (
        french
    )
    assert "clé publique ECDSA (PEM)</a>" in french
    assert "Enveloppe à la BrainCert\xa0: {id, resource, action, created_at" in french
    assert "Die Client-ID ist die ID dieses Webhooks (wird nach dem Speichern angezeigt)" in german
    assert "Umschlag wie bei Edusign: flach {type, appId, ...Felder}" in german
    for english in ("What each profile sends", "the client secret is", "-like envelope"):
        assert english not in french
        assert english not in german


def test_the_audit_trail_names_every_setting_in_the_readers_language(school, school_admin):
    from audit.models import AuditAction, AuditEntry

    subscription = SubscriptionFactory(school=school)
    AuditEntry.objects.all().delete()
    for action, changes in (
        (
            AuditAction.WEBHOOK_CHANGED,
            {
                "profile": ["standard", "edusign"],
                "payload_filter": [None, {"field": "group.id", "op": "eq", "value": 12}],
                "secret_headers": [[], ["X-Receiver-Sig"]],
                "max_concurrency": [None, 4],
                "rate_limit_per_second": [None, 10],
            },
        ),
        (AuditAction.WEBHOOK_PAUSED, {"resume_at": [None, None], "paused": [False, True]}),
        (AuditAction.WEBHOOK_RESUMED, {"paused": [True, False], "held_deliveries": 3}),
        (
            AuditAction.DELIVERIES_REPLAYED,
            {
                "event_types": ["course.created", "student.signed"],
                "since": None,
                "until": None,
                "deliveries": 2,
            },
        ),
    ):
        AuditEntry.objects.create(
            school=school,
            actor_label="ada",
            action=action,
            object_type="webhook",
            object_id=str(subscription.pk),
            object_repr=subscription.name,
            changes=changes,
        )

    german = _page(school_admin, "/admin/audit/auditentry/", HTTP_ACCEPT_LANGUAGE="de-DE")

    for shown in (
        "<div>Zustellprofil: Standard Webhooks → Edusign</div>",
        "<div>Datenfilter: ",
        "<div>Geheime Header: — → X-Receiver-Sig</div>",
        "<div>Gleichzeitige Zustellungen: 4</div>",
        "<div>Zustellungen pro Sekunde: 10</div>",
        "<div>Pausiert: Nein → Ja</div>",
        "<div>Zurückgehaltene Zustellungen: 3</div>",
        # A replay's two types are a list, not a change from one to the other.
        "<div>Ereignistypen: course.created, student.signed</div>",
        "<div>Veröffentlicht seit: —</div>",
    ):
        assert shown in german
    for key in ("Profile:", "Payload_filter", "Secret_headers", "Held_deliveries", "Event_types"):
        assert key not in german
