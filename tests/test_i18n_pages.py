"""Admin pages a French or German reader sees in their language: the refusal pages (403, 400),
a scheduled event's name (breadcrumbs, title) and an audit entry's object type. Each is rendered
in French and German: the translation is there, the English is not."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone, translation
from django.views.defaults import bad_request

from audit.models import AuditAction, AuditEntry
from common.admin_display import datetime_text
from events.models import ScheduledEvent
from schools.services import api_key_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _get(user, path: str, language: str):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client.get(path)


@pytest.mark.parametrize(
    ("language", "title", "explanation"),
    [
        ("fr", "Accès refusé (403)", "Vous n’avez pas le droit de voir cette page"),
        ("de", "Zugriff verweigert (403)", "Sie dürfen diese Seite nicht sehen"),
    ],
)
def test_a_refused_page_speaks_the_readers_language(
    school, support_user, school_admin, language, title, explanation
):
    subscription = SubscriptionFactory(school=school)

    # Support staff never see a signing secret; a school admin has no platform keys.
    for user, path in (
        (support_user, f"/admin/subscriptions/subscription/{subscription.pk}/secret/"),
        (school_admin, "/admin/schools/platformkey/"),
    ):
        response = _get(user, path, language)
        page = response.content.decode()

        assert response.status_code == 403
        assert "Forbidden" not in page
        assert f'<html lang="{language}"' in page
        assert title in page
        assert explanation in page


@pytest.mark.parametrize(
    ("language", "title", "explanation"),
    [
        ("fr", "Requête incorrecte (400)", "La requête n’a pas pu être comprise."),
        ("de", "Ungültige Anfrage (400)", "Die Anfrage konnte nicht verstanden werden."),
    ],
)
def test_a_bad_request_page_speaks_the_readers_language(language, title, explanation):
    request = RequestFactory().get("/admin/")

    with translation.override(language):
        response = bad_request(request, Exception("no"))
    page = response.content.decode()

    assert response.status_code == 400
    assert "Bad Request" not in page
    assert title in page
    assert explanation in page


@pytest.mark.parametrize(
    ("language", "name"),
    [("fr", "course.started le {due} (Planifié)"), ("de", "course.started am {due} (Geplant)")],
)
def test_a_scheduled_events_name_speaks_the_readers_language(school, school_admin, language, name):
    scheduled = ScheduledEvent.objects.create(
        school=school,
        type_id="course.started",
        data={"course": {"id": "c-1"}},
        due_at=timezone.now() + dt.timedelta(days=1),
        key="c-1-start",
    )

    page = _get(
        school_admin, f"/admin/events/scheduledevent/{scheduled.pk}/change/", language
    ).content.decode()

    with translation.override(language):
        due = datetime_text(scheduled.due_at, school.timezone)
    assert scheduled.due_at.isoformat() not in page
    assert "(scheduled)" not in page
    assert '<div class="breadcrumbs">' in page
    breadcrumbs = page[page.index('<div class="breadcrumbs">') :]
    assert name.format(due=due) in breadcrumbs[: breadcrumbs.index("</div>")]


@pytest.mark.parametrize(
    ("language", "api_key", "webhook"),
    [("fr", "Clé d’API", "Webhook"), ("de", "API-Schlüssel", "Webhook")],
)
def test_an_audit_entrys_object_type_speaks_the_readers_language(
    school, school_admin, language, api_key, webhook
):
    AuditEntry.objects.all().delete()
    api_key_create(school=school, name="CRM")
    key_entry = AuditEntry.objects.get(action=AuditAction.API_KEY_CREATED)
    SubscriptionFactory(school=school)
    from audit.services import audit_record

    webhook_entry = audit_record(
        actor=None,
        action=AuditAction.WEBHOOK_PAUSED,
        school_id=school.pk,
        object_type="webhook",
        object_id="x",
        object_repr="CRM",
        changes={"paused": [False, True]},
    )

    key_page = _get(
        school_admin, f"/admin/audit/auditentry/{key_entry.pk}/change/", language
    ).content.decode()
    webhook_page = _get(
        school_admin, f"/admin/audit/auditentry/{webhook_entry.pk}/change/", language
    ).content.decode()

    assert '<div class="readonly">api_key</div>' not in key_page
    assert f'<div class="readonly">{api_key}</div>' in key_page
    assert '<div class="readonly">webhook</div>' not in webhook_page
    assert f'<div class="readonly">{webhook}</div>' in webhook_page


@pytest.mark.parametrize(
    ("language", "yes", "no", "search"),
    [
        ("en", "True", "False", "Search"),
        ("fr", "Oui", "Non", "Rechercher"),
        ("de", "Ja", "Nein", "Suchen"),
    ],
)
def test_a_lists_yes_no_icons_and_search_box_are_named_in_the_readers_language(
    school_admin, language, yes, no, search
):
    # The catalog's list has two yes/no columns (deprecated, shipped) and a search box.
    page = _get(school_admin, "/admin/events/eventtype/?q=course", language).content.decode()

    assert f'src="/static/admin/img/icon-yes.svg" alt="{yes}"' in page
    assert f'src="/static/admin/img/icon-no.svg" alt="{no}"' in page
    assert f'src="/static/admin/img/search.svg" alt="{search}"' in page
    if language != "en":
        assert 'alt="True"' not in page
        assert 'alt="False"' not in page
        assert 'alt="Search"' not in page


@pytest.mark.parametrize(
    ("language", "list_title", "page_title"),
    [
        ("en", "Select scheduled event to view", "View scheduled event"),
        (
            "fr",
            "Sélectionnez l’objet événement planifié à afficher",
            "Affichage de l’objet événement planifié",
        ),
        ("de", "Geplantes Ereignis zum Ansehen auswählen", "Geplantes Ereignis ansehen"),
    ],
)
def test_a_models_name_at_the_start_of_a_title_reads_as_the_language_does(
    school, school_admin, language, list_title, page_title
):
    # French elides before a vowel ("de événement" is wrong); a German heading starts with a
    # capital even when the model's name starts with an adjective ("geplantes Ereignis").
    scheduled = ScheduledEvent.objects.create(
        school=school,
        type_id="course.started",
        data={"course": {"id": "c-1"}},
        due_at=timezone.now() + dt.timedelta(days=1),
        key="c-1-start",
    )

    listing = _get(school_admin, "/admin/events/scheduledevent/", language).content.decode()
    page = _get(
        school_admin, f"/admin/events/scheduledevent/{scheduled.pk}/change/", language
    ).content.decode()

    assert f"<title>{list_title} | " in listing
    assert f"<h1>{list_title}</h1>" in listing
    assert f"| {page_title} | " in page
    assert f"<h1>{page_title}</h1>" in page
