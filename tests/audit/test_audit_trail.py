"""The audit trail: who did which sensitive thing, never a secret value; each school's admins
read their school's entries, support staff and superusers every school's."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from django.core import mail
from django.utils import translation

from audit.models import AuditAction, AuditEntry
from audit.services import actor_user
from common.admin_display import datetime_text
from deliveries.services import delivery_retrigger
from subscriptions.services import (
    subscription_disable,
    subscription_disabled_notify,
    subscription_enable,
    subscription_secret_reveal,
    subscription_secret_rotate,
    subscription_update,
)
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

AUDIT = "/admin/audit/auditentry/"


def test_changing_a_webhook_records_what_changed_but_never_a_secret_value(school, school_admin):
    subscription = SubscriptionFactory(school=school, name="CRM", url="https://crm.example.org/h")

    subscription_update(
        subscription=subscription,
        actor=actor_user(school_admin),
        url="https://crm.example.org/h?token=t0p-s3cret",
        basic_auth_enabled=True,
        basic_auth_username="crm",
        custom_headers={"X-Api-Key": "k3y-value"},
        basic_auth_password="pa55-word",
    )

    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor_label) == (AuditAction.WEBHOOK_CHANGED, "ada")
    assert entry.changes == {
        "url": ["https://crm.example.org/h", "https://crm.example.org/h?token=%E2%80%A6"],
        "basic_auth_enabled": [False, True],
        "basic_auth_username": ["", "crm"],
        "custom_headers": "changed",
        "basic_auth_password": "changed",
    }
    stored = json.dumps(entry.changes)
    assert "t0p-s3cret" not in stored
    assert "k3y-value" not in stored
    assert "pa55-word" not in stored


def test_reveal_rotate_disable_and_re_enable_are_recorded(school, school_admin):
    subscription = SubscriptionFactory(school=school, name="CRM")
    actor = actor_user(school_admin)

    secret = subscription_secret_reveal(subscription=subscription, actor=actor)
    subscription_secret_rotate(subscription=subscription, actor=actor)
    subscription_disable(subscription=subscription, reason="The receiver answered 410 Gone.")
    subscription_enable(subscription=subscription, actor=actor)

    entries = list(AuditEntry.objects.order_by("id").values_list("action", "actor_label"))
    assert entries == [
        (AuditAction.SECRET_REVEALED, "ada"),
        (AuditAction.SECRET_ROTATED, "ada"),
        (AuditAction.WEBHOOK_DISABLED, "system"),
        (AuditAction.WEBHOOK_ENABLED, "ada"),
    ]
    assert secret not in json.dumps(list(AuditEntry.objects.values("changes", "object_repr")))


def test_a_disabled_webhook_e_mails_its_school_admins_in_the_schools_language(
    school, school_admin, django_capture_on_commit_callbacks
):
    subscription = SubscriptionFactory(school=school, name="CRM")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        disabled = subscription_disable(
            subscription=subscription, reason="The receiver answered 410 Gone."
        )
        again = subscription_disable(subscription=subscription, reason="again")

    # Disabling only queues the e-mail's task (once); the task sends it
    assert (disabled, again) == (True, False)
    assert len(callbacks) == 1
    assert mail.outbox == []
    subscription_disabled_notify(
        subscription_id=subscription.pk, reason="The receiver answered 410 Gone."
    )
    [message] = mail.outbox
    assert message.to == ["ada@lycee.example.org"]
    assert message.subject == "Webhook désactivé\xa0: CRM (Lycée Victor Hugo)"
    assert "The receiver answered 410 Gone." in message.body
    assert "réactivez le webhook" in message.body


def test_school_admins_read_their_schools_entries_and_support_reads_all_without_secrets(
    client, school, school_admin, other_school, other_school_admin, support_user
):
    ours = SubscriptionFactory(school=school, name="CRM")
    theirs = SubscriptionFactory(school=other_school, name="LMS")
    delivery_retrigger(delivery=delivery_create(ours), actor=actor_user(school_admin))
    subscription_secret_reveal(subscription=theirs, actor=actor_user(other_school_admin))

    client.force_login(school_admin)
    mine = client.get(AUDIT).content.decode()
    client.force_login(support_user)
    everything = client.get(AUDIT).content.decode()
    webhook_page = client.get(f"/admin/subscriptions/subscription/{ours.pk}/change/")

    assert "Delivery sent again" in mine
    assert "<div>Status: Failed → sending now</div>" in mine
    assert "LMS" not in mine
    assert "Signing secret revealed" in everything
    assert "Delivery sent again" in everything
    assert theirs.secret not in everything
    assert ours.secret not in webhook_page.content.decode()
    assert "Hidden: only the school" in webhook_page.content.decode()


def test_nobody_adds_changes_or_deletes_audit_entries(client, school, admin_user):
    subscription = SubscriptionFactory(school=school)
    subscription_enable(subscription=subscription)  # already on: nothing recorded
    subscription_disable(subscription=subscription, reason="off")
    entry = AuditEntry.objects.get()
    client.force_login(admin_user)

    add = client.get(f"{AUDIT}add/")
    delete = client.post(f"{AUDIT}{entry.pk}/delete/", {"post": "yes"})

    assert (add.status_code, delete.status_code) == (403, 403)
    assert AuditEntry.objects.count() == 1


def test_a_new_webhook_records_the_settings_it_was_given_and_not_the_empty_ones(
    school, school_admin, resolver
):
    from subscriptions.services import subscription_create

    resolver.answer("crm.example.org", ["93.184.216.34"])
    subscription_create(
        school=school,
        actor=actor_user(school_admin),
        name="CRM",
        url="https://crm.example.org/hooks",
        topics=["course.*"],
    )

    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.object_repr) == (AuditAction.WEBHOOK_CREATED, "CRM")
    assert entry.changes == {
        "name": [None, "CRM"],
        "url": [None, "https://crm.example.org/hooks"],
        "topics": [None, ["course.*"]],
        "content_type": [None, "json"],
        "profile": [None, "standard"],
        "basic_auth_enabled": [None, False],
        "sign_ed25519": [None, False],
        "is_active": [None, True],
    }


def test_an_entrys_page_names_its_action_in_the_readers_language(client, school, admin_user):
    subscription = SubscriptionFactory(school=school)
    subscription_disable(subscription=subscription, reason="off")
    entry = AuditEntry.objects.get()
    client.force_login(admin_user)

    french = client.get(f"{AUDIT}{entry.pk}/change/", HTTP_ACCEPT_LANGUAGE="fr-FR").content.decode()

    title = french.split("<title>")[1].split("</title>")[0]
    assert "Webhook désactivé" in title
    assert entry.action not in title  # not the stored value ("webhook.disabled")


def test_a_new_secret_header_value_or_url_token_is_recorded_as_a_change_never_its_value(
    school, school_admin
):
    subscription = SubscriptionFactory(school=school, name="CRM", url="https://crm.example.org/h")
    actor = actor_user(school_admin)
    subscription_update(
        subscription=subscription,
        url="https://crm.example.org/h?token=old-t0ken",
        custom_headers={"X-Api-Key": "old-k3y", "X-Tenant": "lycee"},
    )

    subscription_update(
        subscription=subscription,
        actor=actor,
        custom_headers={"X-Api-Key": "new-k3y", "X-Tenant": "lycee"},
    )
    subscription_update(
        subscription=subscription, actor=actor, url="https://crm.example.org/h?token=new-t0ken"
    )
    # Given back as the mask, the same values: nothing changed, nothing recorded.
    subscription_update(
        subscription=subscription,
        actor=actor,
        url="https://crm.example.org/h?token=••••••••",
        custom_headers={"X-Api-Key": "••••••••", "X-Tenant": "lycee"},
    )

    entries = list(
        AuditEntry.objects.filter(actor_label="ada")
        .order_by("id")
        .values_list("changes", flat=True)
    )
    masked = "https://crm.example.org/h?token=%E2%80%A6"
    assert entries == [{"custom_headers": "changed"}, {"url": [masked, masked]}]
    stored = json.dumps(list(AuditEntry.objects.values_list("changes", flat=True)))
    assert "k3y" not in stored
    assert "t0ken" not in stored


@pytest.mark.parametrize(
    ("language", "name"),
    [
        ("en", "{when} system: Webhook disabled"),
        ("fr", "{when} system\xa0: Webhook désactivé"),
        ("de", "{when} system: Webhook deaktiviert"),
    ],
)
def test_an_entrys_name_gives_its_time_in_the_schools_zone_as_the_language_writes_it(
    client, school, admin_user, language, name
):
    subscription_disable(subscription=SubscriptionFactory(school=school), reason="off")
    entry = AuditEntry.objects.get()
    client.force_login(admin_user)

    page = client.get(f"{AUDIT}{entry.pk}/change/", HTTP_ACCEPT_LANGUAGE=language).content.decode()

    with translation.override(language):
        when = datetime_text(entry.created_at, "Europe/Paris")
    assert f"<h2>{name.format(when=when)}</h2>" in page  # the page's subtitle


def test_a_mail_server_that_never_answers_does_not_hold_the_notice_for_ever(
    school, school_admin, settings, django_capture_on_commit_callbacks, caplog
):
    # A server that takes the connection and then says nothing: no SMTP greeting ever comes.
    # (It hangs up after 30 s, so that a test of a disable that waits for ever ends.)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    def hold() -> None:
        connection, _address = silent.accept()
        time.sleep(30)
        connection.close()

    threading.Thread(target=hold, daemon=True).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = silent.getsockname()
    subscription = SubscriptionFactory(school=school, name="CRM")
    with django_capture_on_commit_callbacks(execute=True):
        subscription_disable(subscription=subscription, reason="The receiver answered 410 Gone.")

    started = time.monotonic()
    subscription_disabled_notify(
        subscription_id=subscription.pk, reason="The receiver answered 410 Gone."
    )
    waited = time.monotonic() - started
    silent.close()

    subscription.refresh_from_db()
    assert not subscription.is_active
    assert "Could not e-mail ['ada@lycee.example.org']" in caplog.text
    # The deployment's own timeout (settings.py), not the server's hanging up.
    assert settings.EMAIL_TIMEOUT is not None
    assert waited < min(settings.EMAIL_TIMEOUT + 2, 29)
