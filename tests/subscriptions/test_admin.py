import datetime as dt
import json
import socket
import threading
import zoneinfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.utils import timezone

from subscriptions.admin import webhooks as webhooks_admin
from subscriptions.crypto import secret_decrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import signing_secret_current, subscription_custom_headers
from subscriptions.services import subscription_disable, subscription_update
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

CHANGED_MEANWHILE = (
    "This webhook was changed since this page was opened (by someone else, or disabled by the "
    "system): saving would undo that. Open the page again to see its settings now, or save "
    "again to replace them with these."
)


def test_a_webhook_added_in_the_admin_gets_a_signing_secret(admin_client, school):
    response = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "CRM",
            "url": "https://crm.example.org/hooks",
            "topics_patterns": "course.*",
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
            "topics_patterns": "grades.*",
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
            "topics_patterns": "course.*",
            "content_type": "json",
            "custom_headers": "Host: evil.example",
            "basic_auth_enabled": "True",
            "basic_auth_username": "crm",
        },
    )

    assert response.status_code == 200
    assert "Host is set by the webhook itself and cannot be a custom header." in response.text
    assert "Enter the password for basic authentication." in response.text
    assert Subscription.objects.count() == 0


# --- The settings page, as a school admin uses it --------------------------------------------

FORM = {
    "name": "CRM",
    "url": "https://crm.example.org/hooks",
    "topics": ["course.created", "student.signed"],
    "topics_patterns": "live_class.*",
    "content_type": "xml",
    "basic_auth_enabled": "True",
    "basic_auth_username": "crm",
    "basic_auth_password": "s3cret-pw",
    "custom_headers": "X-Api-Token: abc\nX-Tenant: lycee",
    "body_template": "",
    "is_active": "on",
}


def test_the_form_follows_braincerts_order(client, school_admin):
    client.force_login(school_admin)

    page = client.get("/admin/subscriptions/subscription/add/").content.decode()

    order = [
        'name="name"',
        'name="url"',
        'name="topics"',
        'name="topics_patterns"',
        'name="content_type"',
        'name="basic_auth_enabled"',
        'name="basic_auth_username"',
        'name="basic_auth_password"',
        'name="custom_headers"',
        'name="body_template"',
        'name="sign_ed25519"',
        'name="_save"',
    ]
    positions = [page.index(marker) for marker in order]
    assert positions == sorted(positions)
    # The school admin's one school is chosen for them.
    school_id = school_admin.school_memberships.get().school_id
    assert f'<input type="hidden" name="school" value="{school_id}"' in page
    assert '<details class="webhook-topic-group" data-group="courses">' in page
    assert "<summary>Courses" in page
    assert 'value="course.created"' in page


def test_a_school_admin_adds_a_webhook_with_types_a_pattern_xml_basic_auth_and_headers(
    client, school, school_admin
):
    client.force_login(school_admin)

    response = client.post("/admin/subscriptions/subscription/add/", {**FORM, "school": school.pk})

    subscription = Subscription.objects.get(name="CRM")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/subscriptions/subscription/{subscription.pk}/change/"
    assert subscription.school == school
    assert subscription.topics == ["course.created", "student.signed", "live_class.*"]
    assert subscription.content_type == "xml"
    assert (subscription.basic_auth_enabled, subscription.basic_auth_username) == (True, "crm")
    assert secret_decrypt(subscription.basic_auth_password_encrypted) == "s3cret-pw"
    # X-Api-Token is named like a credential: its value is stored encrypted.
    assert subscription.custom_headers == {"X-Api-Token": "••••••••", "X-Tenant": "lycee"}
    assert subscription_custom_headers(subscription=subscription) == {
        "X-Api-Token": "abc",
        "X-Tenant": "lycee",
    }
    page = client.get(response["Location"]).content.decode()
    assert "The webhook “CRM” was added." in page
    assert signing_secret_current(subscription=subscription) not in page  # masked
    assert 'name="topics_patterns" id="id_topics_patterns" value="live_class.*"' in page
    assert "A password is set; leave empty to keep it." in page


def test_a_wildcard_that_matches_no_event_type_is_refused_by_name(client, school, school_admin):
    client.force_login(school_admin)

    response = client.post(
        "/admin/subscriptions/subscription/add/",
        {**FORM, "school": school.pk, "topics": [], "topics_patterns": "grades.* course.*"},
    )

    assert response.status_code == 200
    assert "&#x27;grades.*&#x27; matches no event type in the catalog." in response.text
    assert Subscription.objects.count() == 0


def test_a_header_line_without_a_colon_is_refused(client, school, school_admin):
    client.force_login(school_admin)

    response = client.post(
        "/admin/subscriptions/subscription/add/",
        {**FORM, "school": school.pk, "custom_headers": "X-Api-Token abc"},
    )

    assert "Line 1: write each header as Name: value." in response.text
    assert Subscription.objects.count() == 0


def test_every_wrong_header_line_is_named_at_once(client, school, school_admin):
    client.force_login(school_admin)

    response = client.post(
        "/admin/subscriptions/subscription/add/",
        {
            **FORM,
            "school": school.pk,
            "custom_headers": "X-Api-Token abc\nContent-Type: text/plain\nX-Tenant 12\n"
            "X-Room: 日本語\nX-Room: 5A",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["custom_headers"]
    assert errors == [
        "Line 1: write each header as Name: value.",
        "Line 3: write each header as Name: value.",
        "X-Room is given twice.",
        "Content-Type is set by the webhook itself and cannot be a custom header.",
        "The value of X-Room contains '日' (U+65E5), which an HTTP header cannot carry "
        "(RFC 9110, 5.5: visible ASCII and Latin-1 letters only). Encode it, for example in "
        "base64 or percent-encoding.",
    ]
    assert Subscription.objects.count() == 0


@pytest.mark.parametrize(
    ("language", "source", "message"),
    [
        (
            "fr",
            "{% for x in data.tags %}",
            "Ligne 1\xa0: la balise {% for %} n’est pas fermée\xa0; terminez-la par {% endfor %}.",
        ),
        (
            "de",
            "{{ }}",
            "Zeile 1: {{ }} ist leer; schreiben Sie einen Wert hinein, zum Beispiel {{ data }}.",
        ),
        (
            "fr",
            "{\n{{ data|json:1 }}}",
            "Ligne 2\xa0: le filtre 'json' ne prend pas d’argument\xa0; supprimez les deux-points "
            "et ce qui les suit.",
        ),
        (
            "de",
            "{% if data.course %}\n{% for x in data.tags %}{% endif %}",
            "Zeile 2: {% endif %} steht an der falschen Stelle; das offene Tag endet mit "
            "{% endfor %}.",
        ),
    ],
)
def test_a_broken_body_template_is_explained_in_the_readers_language(
    school, school_admin, language, source, message
):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(school_admin)

    response = client.post(
        "/admin/subscriptions/subscription/add/",
        {**FORM, "school": school.pk, "content_type": "json", "body_template": source},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["body_template"] == [message]
    assert Subscription.objects.count() == 0


def test_basic_auth_no_forgets_the_username_and_password(client, school, school_admin):
    client.force_login(school_admin)
    client.post("/admin/subscriptions/subscription/add/", {**FORM, "school": school.pk})
    subscription = Subscription.objects.get(name="CRM")

    client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/change/",
        {**FORM, "basic_auth_enabled": "False", "basic_auth_password": ""},
    )

    subscription.refresh_from_db()
    assert subscription.basic_auth_enabled is False
    assert (subscription.basic_auth_username, subscription.basic_auth_password_encrypted) == (
        "",
        "",
    )


def test_the_preview_renders_a_preset_for_a_topics_sample(client, school, school_admin):
    from webhook_engine.bodies import PRESETS

    client.force_login(school_admin)

    response = client.post(
        "/admin/subscriptions/subscription/preview/",
        {
            "school": school.pk,
            "body_template": PRESETS["braincert"]["json"],
            "content_type": "json",
            "event_type": "course.created",
        },
    )
    broken = client.post(
        "/admin/subscriptions/subscription/preview/",
        {"school": school.pk, "body_template": "{{ nope }}", "event_type": "course.created"},
    )

    body = json.loads(response.json()["body"])
    assert (body["resource"], body["action"]) == ("course", "created")
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("Line 1: 'nope' is not available")


def test_rotating_asks_first_then_keeps_the_old_secret_signing(client, school, school_admin):
    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school)
    url = f"/admin/subscriptions/subscription/{subscription.pk}/rotate-secret/"

    confirmation = client.get(url)
    before = signing_secret_current(subscription=subscription)
    rotated = client.post(url, follow=True)

    assert "Yes, rotate" in confirmation.content.decode()
    assert signing_secret_current(subscription=subscription) != before
    assert SigningSecret.objects.filter(subscription=subscription).count() == 2
    assert [str(m) for m in rotated.context["messages"]] == [
        "A new signing secret signs from now on; the previous one keeps signing for 24 hours. "
        "Reveal the new one below and give it to the receiver."
    ]


_EDUSIGN_NEWEST_ONLY = (
    "This webhook speaks Edusign, whose own signature carries the new secret only"
)


def test_rotating_an_edusign_webhook_warns_that_its_receiver_needs_the_new_secret_at_once(
    client, school, school_admin
):
    """Edusign's ``x-edusign-hmac`` carries one signature, made with the newest secret: the
    grace during which both secrets sign does not help a receiver written for Edusign."""
    client.force_login(school_admin)
    edusign = SubscriptionFactory(school=school, profile="edusign", topics=["course.created"])
    standard = SubscriptionFactory(school=school)

    def confirmation(subscription):
        url = f"/admin/subscriptions/subscription/{subscription.pk}/rotate-secret/"
        return " ".join(client.get(url).content.decode().split())

    assert _EDUSIGN_NEWEST_ONLY in confirmation(edusign)
    assert _EDUSIGN_NEWEST_ONLY not in confirmation(standard)
    client.cookies["django_language"] = "fr"
    assert "Ce webhook parle Edusign, dont la signature propre" in confirmation(edusign)


def test_rotating_several_webhooks_names_those_whose_receiver_needs_the_new_secret_at_once(
    client, school, school_admin
):
    client.force_login(school_admin)
    chosen = [
        SubscriptionFactory(school=school, profile="edusign", topics=["course.created"]),
        SubscriptionFactory(school=school),
    ]

    response = client.post(
        "/admin/subscriptions/subscription/",
        {"action": "rotate_secrets", "_selected_action": [str(s.pk) for s in chosen]},
        follow=True,
    )

    assert [str(m) for m in response.context["messages"]] == [
        "2 signing secrets rotated; the previous ones keep signing for 24 hours, so receivers "
        "can switch.",
        "1 of them speaks Edusign, whose own signature carries the new secret only: its "
        "receiver refuses the deliveries until it has the new secret. Give it the new secret "
        "now.",
    ]
    assert SigningSecret.objects.filter(subscription__in=chosen).count() == 4


def test_the_secret_page_shows_it_only_after_a_post(client, school, school_admin):
    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school)
    url = f"/admin/subscriptions/subscription/{subscription.pk}/secret/"

    asked = client.get(url).content.decode()
    shown = client.post(url).content.decode()

    assert subscription.secret not in asked
    assert subscription.secret in shown


def test_a_secret_no_key_can_read_is_explained_in_the_readers_language(
    client, school, school_admin, settings
):
    from cryptography.fernet import Fernet

    from subscriptions.crypto import secret_encrypt

    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school)
    current_keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # a key since lost
    SigningSecret.objects.filter(subscription=subscription).update(
        secret_encrypted=secret_encrypt(subscription.secret)
    )
    settings.WEBHOOKS_ENCRYPTION_KEYS = current_keys
    url = f"/admin/subscriptions/subscription/{subscription.pk}/secret/"

    page = client.post(url, HTTP_ACCEPT_LANGUAGE="fr")
    button = client.post(url, HTTP_ACCEPT_LANGUAGE="de", HTTP_ACCEPT="application/json")

    assert page.status_code == 200
    assert (
        "Le secret de signature ne peut pas être déchiffré avec les clés de chiffrement de la "
        "plateforme. Renouvelez-le pour en créer un nouveau, puis donnez-le au destinataire."
    ) in page.content.decode()
    assert "WEBHOOKS_ENCRYPTION_KEYS" not in page.content.decode()
    assert button.status_code == 409
    assert button.json() == {
        "error": "Das Signaturgeheimnis kann mit den Verschlüsselungsschlüsseln der Plattform "
        "nicht entschlüsselt werden. Erneuern Sie es, um ein neues zu erzeugen, und geben Sie "
        "dieses dem Empfänger."
    }


def test_send_test_from_the_page_shows_the_receivers_answer(client, school, school_admin, receiver):
    from tests.receiver import Reply

    receiver.script("/hook", Reply(status=401, body=b"bad credentials"))
    client.force_login(school_admin)
    subscription = SubscriptionFactory(
        school=school, url=receiver.url("/hook"), topics=["course.*"]
    )

    page = client.get(f"/admin/subscriptions/subscription/{subscription.pk}/change/")
    result = client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/send-test/",
        {"event_type": "course.created"},
    ).content.decode()

    assert 'name="_send_test"' in page.content.decode()
    assert '<strong class="send-test-status" style="color: #c62828;">401</strong>' in result
    assert "bad credentials" in result
    assert "401: the receiver rejected the credentials" in result
    [request] = receiver.received("/hook")
    assert request.headers["x-webhook-event"] == "course.created"


def test_send_test_offers_only_the_topics_the_webhook_receives(client, school, school_admin):
    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school, topics=["student.signed"])

    refused = client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/send-test/",
        {"event_type": "course.created"},
    ).content.decode()

    assert "Select a valid choice. course.created is not one of the available choices." in refused


def test_send_test_from_the_list_opens_the_webhooks_send_test_page(client, school, school_admin):
    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school)

    response = client.post(
        "/admin/subscriptions/subscription/",
        {"action": "send_test", "index": "0", "_selected_action": [str(subscription.pk)]},
    )

    assert response["Location"] == (
        f"/admin/subscriptions/subscription/{subscription.pk}/send-test/"
    )


def test_recover_asks_for_a_time_then_resends_the_failed_deliveries_since(
    client, school, school_admin
):
    from deliveries.models import Delivery, DeliveryStatus
    from tests.deliveries.factories import delivery_create

    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school)
    old = delivery_create(subscription)
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    recent = [delivery_create(subscription) for _ in range(2)]
    url = f"/admin/subscriptions/subscription/{subscription.pk}/recover/"
    since = timezone.localtime() - dt.timedelta(days=1)

    asked = client.get(url).content.decode()
    done = client.post(url, {"since": since.strftime("%Y-%m-%dT%H:%M")}, follow=True)

    assert "Recover failed deliveries" in asked
    # The time typed is read in the school's zone (its admin's pages are in it).
    shown = since.replace(second=0, microsecond=0, tzinfo=zoneinfo.ZoneInfo(school.timezone))
    assert [str(m) for m in done.context["messages"]] == [
        f"2 failed deliveries since {shown:%m/%d/%Y %H:%M:%S} {shown:%Z} are being sent again."
    ]
    assert {d.status for d in Delivery.objects.filter(pk__in=[r.pk for r in recent])} == {
        DeliveryStatus.PENDING
    }
    assert Delivery.objects.get(pk=old.pk).status == DeliveryStatus.FAILED


def test_the_list_shows_each_webhooks_health_in_a_fixed_number_of_queries(
    client, school, school_admin, django_assert_max_num_queries
):
    from deliveries.models import DeliveryStatus
    from tests.deliveries.factories import delivery_create

    client.force_login(school_admin)
    failing = SubscriptionFactory(school=school, name="Failing", failing_since=timezone.now())
    healthy = SubscriptionFactory(school=school, name="Healthy")
    SubscriptionFactory(
        school=school, name="Off", is_active=False, disabled_reason="The receiver said 410 Gone."
    )
    for _ in range(3):
        delivery_create(healthy, status=DeliveryStatus.DELIVERED)
    delivery_create(healthy)
    delivery_create(failing)

    # 14 before, + the school's language and zone, + the recovered deliveries of the page, + the
    # circuit breakers of the page.
    with django_assert_max_num_queries(17):
        page = client.get("/admin/subscriptions/subscription/").content.decode()

    assert page.count("webhook-state-failing") == 1
    assert "The receiver said 410 Gone." in page
    assert "75% / 7 d" in page
    assert "0% / 7 d" in page
    assert page.count(">1 failure</a> / 24 h") == 2
    failing_only = client.get("/admin/subscriptions/subscription/", {"state": "failing"})
    assert [s.name for s in failing_only.context["cl"].result_list] == ["Failing"]
    by_topic = client.get("/admin/subscriptions/subscription/", {"topic": "student.signed"})
    assert len(by_topic.context["cl"].result_list) == 3  # topics ["*"]


def test_deleting_a_webhook_counts_its_delivery_log_instead_of_listing_it(
    client, school, school_admin
):
    from deliveries.models import Delivery
    from tests.deliveries.factories import delivery_create

    client.force_login(school_admin)
    subscription = SubscriptionFactory(school=school, name="Old CRM")
    for _ in range(3):
        delivery_create(subscription)
    url = f"/admin/subscriptions/subscription/{subscription.pk}/delete/"

    confirmation = client.get(url)
    client.post(url, {"post": "yes"})

    assert dict(confirmation.context["model_count"]) == {
        "webhooks": 1,
        "deliveries, with their attempts": 3,
    }
    assert not confirmation.context["perms_lacking"]
    assert not Subscription.objects.filter(pk=subscription.pk).exists()
    assert Delivery.objects.count() == 0


def test_a_webhooks_page_shows_its_chart_its_recent_deliveries_and_its_audit_trail(
    client, school, school_admin
):
    from audit.models import AuditAction
    from audit.services import Actor, audit_record
    from deliveries.models import DeliveryStatus
    from tests.deliveries.factories import delivery_create

    webhook = SubscriptionFactory(school=school, name="CRM")
    other = SubscriptionFactory(school=school, name="LMS")
    delivered = delivery_create(webhook, status=DeliveryStatus.DELIVERED, event_type="user.created")
    failed = delivery_create(webhook, event_type="course.created")
    elsewhere = delivery_create(other, event_type="course.updated")
    audit_record(
        actor=Actor(label="grace"),
        action=AuditAction.SECRET_ROTATED,
        school_id=school.pk,
        object_type="webhook",
        object_id=webhook.pk,
        object_repr=str(webhook),
    )
    client.force_login(school_admin)

    page = client.get(f"/admin/subscriptions/subscription/{webhook.pk}/change/").text

    lower = page[page.index('id="webhook-deliveries"') :]
    assert "<svg" in lower  # the chart of its deliveries
    recent = lower[lower.index('class="recent-deliveries"') :]
    recent = recent[: recent.index("</table>")]
    assert f"/admin/deliveries/delivery/{delivered.pk}/change/" in recent
    assert f"/admin/deliveries/delivery/{failed.pk}/change/" in recent
    assert f"/admin/deliveries/delivery/{elsewhere.pk}/change/" not in recent
    assert "Delivered" in recent
    assert "Failed" in recent
    trail = lower[lower.index('class="audit-entries"') :]
    assert "grace" in trail
    assert "Signing secret rotated" in trail


def _saved_after(monkeypatch, meanwhile) -> None:
    """The admin's save runs after another request did ``meanwhile`` (once, committed on its own
    connection), past the checks this request's form already passed."""
    real = webhooks_admin.subscription_save
    calls = []

    def other_request() -> None:
        try:
            meanwhile()
        finally:
            connection.close()

    def other_request_first(**kwargs):
        if not calls:
            calls.append(1)
            thread = threading.Thread(target=other_request)
            thread.start()
            thread.join()
        return real(**kwargs)

    monkeypatch.setattr(webhooks_admin, "subscription_save", other_request_first)


@pytest.mark.django_db(transaction=True)
def test_a_name_another_admin_takes_meanwhile_is_a_form_error(
    client, school, school_admin, monkeypatch
):
    # Given another admin who adds a webhook named "CRM" while this one's form is being saved
    client.force_login(school_admin)
    _saved_after(monkeypatch, lambda: SubscriptionFactory(school=school, name="CRM"))

    # When this admin saves a new webhook with that name
    response = client.post("/admin/subscriptions/subscription/add/", {**FORM, "school": school.pk})

    # Then the page comes back with the name refused and what was typed kept; nothing is added
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "__all__": ["Webhook with this School and Name already exists."]
    }
    assert 'name="url" value="https://crm.example.org/hooks"' in response.content.decode()
    assert Subscription.objects.filter(school=school, name="CRM").count() == 1


@pytest.mark.django_db(transaction=True)
def test_saving_a_webhook_another_admin_deleted_meanwhile_is_a_404(
    client, school, school_admin, monkeypatch
):
    # Given a webhook another admin deletes while this one's change is being saved
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM")
    _saved_after(monkeypatch, lambda: Subscription.objects.filter(pk=webhook.pk).delete())
    page = f"/admin/subscriptions/subscription/{webhook.pk}/change/"

    # When this admin saves it
    response = client.post(page, {**FORM, "school": school.pk, "name": "CRM 2"})

    # Then the answer is the one its page now gives, and the webhook is not brought back
    assert response.status_code == client.get(page).status_code == 404
    assert not Subscription.objects.filter(pk=webhook.pk).exists()


def test_saving_resolves_the_urls_host_once(admin_client, school, resolver):
    response = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {**FORM, "school": school.pk, "url": "https://once.example.org/hooks"},
    )

    assert response.status_code == 302
    assert resolver.lookups.count("once.example.org") == 1


@pytest.mark.django_db(transaction=True)
def test_saving_the_form_keeps_the_state_the_engine_wrote_meanwhile(
    client, school, school_admin, resolver, monkeypatch
):
    # Given a webhook whose receiver starts failing, and is paused by another admin, while this
    # admin's save resolves its URL (the same: a new one would start its failure streak afresh)
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM", url="https://new.example.org/hooks")
    failing, paused = timezone.now() - dt.timedelta(minutes=5), timezone.now()
    real = resolver.getaddrinfo

    def engine_writes_meanwhile(host, *args, **kwargs):
        if host == "new.example.org":
            thread = threading.Thread(
                target=lambda: (
                    Subscription.objects.filter(pk=webhook.pk).update(
                        failing_since=failing, paused_at=paused
                    ),
                    connection.close(),
                )
            )
            thread.start()
            thread.join(10)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", engine_writes_meanwhile)

    # When the admin saves the webhook's page
    response = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/change/",
        {**FORM, "school": school.pk, "url": "https://new.example.org/hooks", "name": "CRM 2"},
    )

    # Then the new settings are saved and the state written meanwhile is kept
    assert response.status_code == 302
    stored = Subscription.objects.get(pk=webhook.pk)
    assert (stored.name, stored.url) == ("CRM 2", "https://new.example.org/hooks")
    assert (stored.failing_since, stored.paused_at) == (failing, paused)


def _page_version(client, webhook) -> dict:
    """What the webhook's page, opened now, sends back with its form besides the settings."""
    page = client.get(f"/admin/subscriptions/subscription/{webhook.pk}/change/")
    version = page.context["adminform"].form.initial.get("settings_version")
    return {} if version is None else {"settings_version": version}


def test_saving_a_page_opened_before_another_admins_change_does_not_undo_it(
    client, school, school_admin
):
    # Given an admin who opens a webhook's page, and another admin who then moves the webhook
    # to a new receiver
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM", url="https://crm.example.org/hooks")
    opened = _page_version(client, webhook)
    subscription_update(subscription=webhook, url="https://new.example.org/hooks")

    # When the first admin renames it from the page as it was
    page = f"/admin/subscriptions/subscription/{webhook.pk}/change/"
    form = {**FORM, "school": school.pk, "url": "https://crm.example.org/hooks", **opened}
    response = client.post(page, {**form, "name": "CRM 2"})

    # Then the save is refused with the reason and nothing is written: the new receiver stays
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert [str(error) for error in errors] == [CHANGED_MEANWHILE]
    assert 'name="name" value="CRM 2"' in response.content.decode()  # what was typed is kept
    stored = Subscription.objects.get(pk=webhook.pk)
    assert (stored.name, stored.url) == ("CRM", "https://new.example.org/hooks")

    # And saving that page again, now knowing, replaces the settings with those typed
    again = response.context["adminform"].form["settings_version"].value()
    response = client.post(page, {**form, "name": "CRM 2", "settings_version": again})
    assert response.status_code == 302
    stored = Subscription.objects.get(pk=webhook.pk)
    assert (stored.name, stored.url) == ("CRM 2", "https://crm.example.org/hooks")


def test_saving_a_page_opened_before_the_webhook_was_disabled_does_not_turn_it_back_on(
    client, school, school_admin
):
    # Given a webhook's page opened while it was active, and its receiver answering 410 Gone
    # since (the engine disabled it)
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM", url="https://crm.example.org/hooks")
    opened = _page_version(client, webhook)
    subscription_disable(subscription=webhook, reason="The receiver answered 410 Gone.")

    # When the admin saves a new name from that page (its Active box still ticked)
    response = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/change/",
        {**FORM, "school": school.pk, "url": webhook.url, "name": "CRM 2", **opened},
    )

    # Then the save is refused: the webhook stays disabled, with its reason
    assert response.status_code == 200
    stored = Subscription.objects.get(pk=webhook.pk)
    assert (stored.is_active, stored.disabled_reason, stored.name) == (
        False,
        "The receiver answered 410 Gone.",
        "CRM",
    )


@pytest.mark.django_db(transaction=True)
def test_a_change_another_admin_saves_while_this_page_is_being_saved_is_not_undone(
    client, school, school_admin, monkeypatch
):
    # Given a webhook's page, and another admin who changes its URL after this page's checks
    # passed, before its save
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM", url="https://crm.example.org/hooks")
    opened = _page_version(client, webhook)
    _saved_after(
        monkeypatch,
        lambda: subscription_update(subscription=webhook, url="https://new.example.org/hooks"),
    )

    # When this admin saves a new name
    response = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/change/",
        {**FORM, "school": school.pk, "url": webhook.url, "name": "CRM 2", **opened},
    )

    # Then the page comes back saying so, and the other admin's change stands
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert [str(error) for error in errors] == [CHANGED_MEANWHILE]
    stored = Subscription.objects.get(pk=webhook.pk)
    assert (stored.name, stored.url) == ("CRM", "https://new.example.org/hooks")


def test_send_test_from_a_page_opened_before_a_change_still_sends(client, school, school_admin):
    # Send Test saves nothing: a page older than the webhook's settings may still try its own
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM", url="http://127.0.0.1:9/hooks")
    opened = _page_version(client, webhook)
    subscription_update(subscription=webhook, name="CRM renamed")

    response = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/change/",
        {
            **FORM,
            "school": school.pk,
            "url": webhook.url,
            "basic_auth_enabled": "False",
            "_send_test": "1",
            "send_test-event_type": "course.created",
            **opened,
        },
    )

    assert response.status_code == 200
    assert "send_test_errors" not in response.context


def test_turning_a_disabled_webhook_back_on_forgets_why_it_was_off(client, school, school_admin):
    client.force_login(school_admin)
    webhook = SubscriptionFactory(
        school=school,
        name="CRM",
        is_active=False,
        disabled_at=timezone.now(),
        disabled_reason="The receiver answered 410 Gone.",
        failing_since=timezone.now(),
    )

    response = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/change/",
        {**FORM, "school": school.pk, "is_active": "on"},
    )

    assert response.status_code == 302
    stored = Subscription.objects.get(pk=webhook.pk)
    assert stored.is_active is True
    assert (stored.disabled_reason, stored.disabled_at, stored.failing_since) == ("", None, None)


def test_a_save_refused_twice_says_why_instead_of_failing(
    client, school, school_admin, monkeypatch
):
    # Given a save that the service refuses even after the page's checks ran again
    client.force_login(school_admin)

    def refused(**kwargs):
        raise ValidationError({"url": ["The host name could not be resolved; check the URL."]})

    monkeypatch.setattr(webhooks_admin, "subscription_save", refused)

    # When the admin saves a new webhook
    response = client.post(
        "/admin/subscriptions/subscription/add/", {**FORM, "school": school.pk}, follow=True
    )

    # Then they are back on the page with the reason, and nothing was added
    assert response.redirect_chain == [("/admin/subscriptions/subscription/add/", 302)]
    assert "The host name could not be resolved; check the URL." in response.content.decode()
    assert not Subscription.objects.filter(name="CRM").exists()


def test_a_new_webhooks_secret_kept_under_a_key_since_removed_is_made_anew(
    admin_client, school, settings
):
    from cryptography.fernet import Fernet

    from subscriptions.crypto import secret_encrypt

    # Send Test on the Add page kept the new webhook's secret in the session; then the
    # encryption key it was kept under was rotated out.
    current_keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = secret_encrypt("whsec_" + "A" * 43 + "=")
    settings.WEBHOOKS_ENCRYPTION_KEYS = current_keys
    session = admin_client.session
    session[webhooks_admin._NEW_SECRET_KEY] = lost
    session.save()
    settings_page = {
        "school": school.pk,
        "name": "CRM",
        "url": "https://crm.example.org/hooks",
        "topics_patterns": "course.*",
        "content_type": "json",
        "is_active": "on",
    }

    tested = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {**settings_page, "_send_test": "1", "send_test-event_type": "course.created"},
    )
    session = admin_client.session
    session[webhooks_admin._NEW_SECRET_KEY] = lost
    session.save()
    saved = admin_client.post("/admin/subscriptions/subscription/add/", settings_page)

    assert tested.status_code == 200
    assert saved.status_code == 302
    secret = signing_secret_current(subscription=Subscription.objects.get(name="CRM"))
    assert secret.startswith("whsec_")
    assert secret != "whsec_" + "A" * 43 + "="
