import datetime as dt
import json
import re

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone, translation
from django.utils.html import strip_tags

from common.admin_display import datetime_text
from deliveries.services.pausing import subscription_pause
from schools.services import school_admin_grant
from subscriptions.crypto import secret_decrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import signing_secret_current
from subscriptions.services import subscription_body_preview, subscription_create
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_the_admin_index_names_failing_and_disabled_webhooks_of_the_users_schools(
    client, school, django_user_model
):
    other_school = SchoolFactory()
    user = django_user_model.objects.create_user("ada", "ada@example.org", "pw", is_staff=True)
    school_admin_grant(user=user, school=school)
    SubscriptionFactory(
        school=school, name="CRM", failing_since=timezone.now() - dt.timedelta(hours=2)
    )
    SubscriptionFactory(
        school=school,
        name="ERP",
        is_active=False,
        disabled_at=timezone.now(),
        disabled_reason="The receiver answered 410 Gone.",
    )
    SubscriptionFactory(school=school, name="Healthy")
    SubscriptionFactory(school=other_school, name="Someone else's", failing_since=timezone.now())
    client.force_login(user)

    page = client.get("/admin/").content.decode()

    assert "CRM</a></strong>\n        has been failing since" in page
    assert "ERP</a></strong>\n        has been disabled since" in page
    assert "The receiver answered 410 Gone." in page
    assert "re-enable the webhook" in page
    assert "Healthy" not in page
    assert "Someone else" not in page


def test_the_preview_renders_a_template_or_the_standard_envelope_for_a_sample(school):
    preview = subscription_body_preview(
        body_template='{"course": {{ data.course.name|json }}, "school": {{ school.slug|json }}}',
        content_type="json",
        event_type="course.created",
        school=school,
    )
    standard = subscription_body_preview(
        body_template="", content_type="xml", event_type="course.created", school=school
    )

    assert json.loads(preview)["school"] == "lycee-victor-hugo"
    assert isinstance(json.loads(preview)["course"], str)
    assert standard.startswith('<?xml version="1.0" encoding="utf-8"?>\n<webhook><id>')


def test_the_preview_explains_what_is_wrong(school):
    with pytest.raises(ValidationError) as raised:
        subscription_body_preview(
            body_template='{"course": {{ data.course.name }}}',
            content_type="json",
            event_type="course.created",
            school=school,
        )

    assert raised.value.message_dict["body_template"][0].startswith(
        "the body is not valid JSON: Expecting value"
    )


def test_a_body_nested_deeper_than_json_can_be_read_is_a_clear_error_too(school):
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(ValidationError) as raised:
        subscription_body_preview(
            body_template=deep, content_type="json", event_type="course.created", school=school
        )
    with pytest.raises(ValidationError) as saving:
        subscription_create(
            school=school,
            name="Deep",
            url="https://lms.example.org/hooks",
            topics=["course.created"],
            body_template=deep,
        )

    assert raised.value.message_dict["body_template"] == [
        "the body is nested too deeply to be read as JSON"
    ]
    assert saving.value.message_dict["body_template"] == [
        "With the sample payload of course.created: the body is nested too deeply to be read "
        "as JSON"
    ]


def test_rotating_the_encryption_key_re_encrypts_every_secret(school, settings):
    subscription = subscription_create(
        school=school,
        name="LMS",
        url="https://lms.example.org/hooks",
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="lms",
        basic_auth_password="pw-1",
    )
    secret = signing_secret_current(subscription=subscription)
    new_key = Fernet.generate_key().decode()
    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key, *settings.WEBHOOKS_ENCRYPTION_KEYS]

    call_command("encryption_keys_rotate")

    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    subscription.refresh_from_db()
    assert signing_secret_current(subscription=subscription) == secret
    assert secret_decrypt(subscription.basic_auth_password_encrypted) == "pw-1"
    stored = SigningSecret.objects.get(subscription=subscription).secret_encrypted
    assert Fernet(new_key.encode()).decrypt(stored.encode()).decode() == secret


def test_re_enabling_from_the_webhook_list_is_one_action(admin_client, school):
    subscription = SubscriptionFactory(
        school=school, is_active=False, disabled_reason="Failing for 5 days."
    )

    admin_client.post(
        "/admin/subscriptions/subscription/",
        {"action": "enable_selected", "_selected_action": [str(subscription.pk)]},
    )

    subscription.refresh_from_db()
    assert subscription.is_active is True
    assert subscription.disabled_reason == ""
    assert Subscription.objects.filter(is_active=False).count() == 0


def test_the_home_page_charts_the_failures_and_names_the_slowest_receivers(
    client, school, school_admin, django_assert_max_num_queries
):
    from deliveries.models import DeliveryStatus
    from tests.deliveries.factories import delivery_create

    crm = SubscriptionFactory(school=school, name="CRM")
    delivery_create(crm)  # failed with a 500, answered in 12 ms
    delivery_create(crm, status=DeliveryStatus.DELIVERED)
    client.force_login(school_admin)

    with django_assert_max_num_queries(20):
        page = client.get("/admin/").content.decode()

    assert "1 delivery failed in the last 24 hours; its webhook has recovered." in page
    assert '<li class="chart-total-failed">' in page
    assert "Failed: <strong>1</strong>" in page
    assert "Delivered: <strong>1</strong>" in page
    assert "Slowest receivers, last 24 hours" in page
    assert ">CRM</a>" in page
    assert "Periodic tasks" not in page


def test_a_key_rotation_is_not_blocked_by_a_signing_secret_that_no_longer_signs(school, settings):
    from subscriptions.crypto import secret_encrypt
    from subscriptions.services import subscription_secret_rotate

    subscription = subscription_create(
        school=school, name="LMS", url="https://lms.example.org/hooks", topics=["*"]
    )
    old_keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # a key since lost
    SigningSecret.objects.filter(subscription=subscription).update(
        secret_encrypted=secret_encrypt("whsec_" + "A" * 43 + "=")
    )
    settings.WEBHOOKS_ENCRYPTION_KEYS = old_keys
    secret = subscription_secret_rotate(subscription=subscription)  # the way out: a new secret
    new_key = Fernet.generate_key().decode()
    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key, *old_keys]

    call_command("encryption_keys_rotate")

    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert signing_secret_current(subscription=subscription) == secret
    [kept] = SigningSecret.objects.filter(subscription=subscription)
    assert Fernet(new_key.encode()).decrypt(kept.secret_encrypted.encode()).decode() == secret


def test_a_key_rotation_names_each_secret_no_key_can_read_and_changes_nothing(school, settings):
    from django.core.management.base import CommandError

    from subscriptions.crypto import secret_encrypt

    readable = subscription_create(
        school=school, name="CRM", url="https://crm.example.org/hooks?token=t0k", topics=["*"]
    )
    lost = subscription_create(
        school=school,
        name="LMS",
        url="https://lms.example.org/hooks",
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="lms",
        basic_auth_password="pw-1",
    )
    old_keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # a key since lost
    Subscription.objects.filter(pk=lost.pk).update(
        basic_auth_password_encrypted=secret_encrypt("pw-1")
    )
    SigningSecret.objects.filter(subscription=lost).update(
        secret_encrypted=secret_encrypt("whsec_" + "A" * 43 + "=")
    )
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *old_keys]
    before = list(Subscription.objects.order_by("pk").values_list("url_encrypted", flat=True))

    with pytest.raises(CommandError) as refused:
        call_command("encryption_keys_rotate")

    assert str(refused.value) == (
        f"No configured key can read the signing secret of webhook {lost.pk}; the basic-auth "
        f"password of webhook {lost.pk}. Enter those settings again (rotate a signing secret) "
        "and run this again. Nothing was changed."
    )
    after = list(Subscription.objects.order_by("pk").values_list("url_encrypted", flat=True))
    assert after == before
    settings.WEBHOOKS_ENCRYPTION_KEYS = old_keys
    readable.refresh_from_db()
    assert secret_decrypt(readable.url_encrypted) == "https://crm.example.org/hooks?token=t0k"


@pytest.mark.parametrize(
    ("language", "status", "until_resumed", "resumes_at"),
    [
        (
            "en",
            "2 webhooks are paused: their deliveries are held until they resume.",
            "is paused since {since}, until someone resumes it.",
            "is paused since {since}; it resumes at {until}.",
        ),
        (
            "fr",
            "2 webhooks sont en pause\xa0: leurs envois sont retenus jusqu’à leur reprise.",
            "est en pause depuis le {since}, jusqu’à ce que quelqu’un le reprenne.",
            "est en pause depuis le {since}\xa0; il reprend le {until}.",
        ),
        (
            "de",
            "2 Webhooks sind pausiert: Ihre Zustellungen werden bis zur Fortsetzung "
            "zurückgehalten.",
            "ist seit {since} pausiert, bis ihn jemand fortsetzt.",
            "ist seit {since} pausiert und wird am {until} fortgesetzt.",
        ),
    ],
)
def test_the_admin_index_names_the_paused_webhooks_and_when_each_resumes(
    client, school, school_admin, language, status, until_resumed, resumes_at
):
    crm = SubscriptionFactory(school=school, name="CRM")
    erp = SubscriptionFactory(school=school, name="ERP")
    SubscriptionFactory(school=school, name="Healthy")
    elsewhere = SubscriptionFactory(school=SchoolFactory(), name="Someone else's")
    subscription_pause(subscription=crm)
    subscription_pause(subscription=erp, until=timezone.now() + dt.timedelta(days=2))
    subscription_pause(subscription=elsewhere)
    crm.refresh_from_db()
    erp.refresh_from_db()
    client.force_login(school_admin)

    page = client.get("/admin/", HTTP_ACCEPT_LANGUAGE=language).content.decode()

    with translation.override(language):
        crm_since = datetime_text(crm.paused_at, school.timezone)
        erp_since = datetime_text(erp.paused_at, school.timezone)
        erp_until = datetime_text(erp.resume_at, school.timezone)
    text = re.sub(r"[ \t\r\n]+", " ", strip_tags(page))  # no-break spaces kept
    assert status in text
    assert "Everything is fine" not in page
    assert "CRM " + until_resumed.format(since=crm_since) in text
    assert "ERP " + resumes_at.format(since=erp_since, until=erp_until) in text
    assert "Healthy" not in text
    assert "Someone else" not in text


def test_the_admin_index_counts_every_webhook_needing_attention_and_names_the_first(
    client, school, school_admin
):
    """Beyond the 20 the page names of each kind, the headline still counts them all, the
    rest are a link to the list, and a disabled webhook is never crowded out by failing ones
    that sort before it."""
    now = timezone.now()
    for number in range(23):
        SubscriptionFactory(school=school, name=f"A failing {number:02}", failing_since=now)
    SubscriptionFactory(
        school=school,
        name="Z disabled",
        is_active=False,
        disabled_at=now,
        disabled_reason="Disabled after 24 hours of failures.",
    )
    for number in range(21):
        subscription_pause(subscription=SubscriptionFactory(school=school, name=f"P {number:02}"))
    client.force_login(school_admin)

    page = client.get("/admin/").content.decode()

    text = " ".join(strip_tags(page).split())
    assert "1 webhook is disabled: nothing is sent to it. 23 webhooks are failing." in text
    assert "Z disabled has been disabled since" in text
    assert "A failing 19 has been failing since" in text
    assert "A failing 20" not in text
    assert "3 more failing webhooks" in text
    assert 'href="/admin/subscriptions/subscription/?state=failing"' in page
    assert "1 more paused webhook" in text
    assert "more disabled" not in text
    french = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "3 autres webhooks en échec" in french


def test_the_admin_index_links_to_the_webhooks_it_counts_as_disabled(client, school, school_admin):
    """Its "more disabled" link lists the webhooks disabled automatically, as it counts them:
    not those a school admin turned off by hand (disabled too, in the list's own filter)."""
    now = timezone.now()
    for number in range(21):
        SubscriptionFactory(
            school=school,
            name=f"D {number:02}",
            is_active=False,
            disabled_at=now,
            disabled_reason="The receiver answered 410 Gone.",
        )
    SubscriptionFactory(school=school, name="Turned off by hand", is_active=False)
    client.force_login(school_admin)

    page = client.get("/admin/").content.decode()

    assert "1 more disabled webhook" in " ".join(strip_tags(page).split())
    link = "/admin/subscriptions/subscription/?state=disabled_automatically"
    assert f'href="{link}"' in page
    listed = client.get(link).context["cl"].result_list
    assert sorted(webhook.name for webhook in listed) == [f"D {n:02}" for n in range(21)]
    everything_off = client.get("/admin/subscriptions/subscription/?state=disabled")
    assert everything_off.context["cl"].result_count == 22
    french = client.get(link, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Désactivé automatiquement" in french


def test_the_admin_index_resumes_a_paused_webhook(client, school, school_admin):
    crm = SubscriptionFactory(school=school, name="CRM")
    subscription_pause(subscription=crm)
    client.force_login(school_admin)
    page = client.get("/admin/").content.decode()
    assert f'action="/admin/subscriptions/subscription/{crm.pk}/pause/"' in page

    answer = client.post(
        f"/admin/subscriptions/subscription/{crm.pk}/pause/", {"_resume": "Resume"}, follow=True
    )

    crm.refresh_from_db()
    assert crm.paused_at is None
    assert "“CRM” is resumed; no delivery was held while it was paused." in answer.content.decode()
    page = client.get("/admin/").content.decode()
    assert "Everything is fine: every webhook is delivering." in page


def test_a_key_rotation_with_a_malformed_key_says_so_and_changes_nothing(school, settings):
    """A key pasted wrong in the environment (cut short) is the operator's to correct: a
    one-line error, not a traceback."""
    from django.core.management.base import CommandError

    subscription_create(
        school=school, name="CRM", url="https://crm.example.org/hooks?token=t0k", topics=["*"]
    )
    before = list(SigningSecret.objects.values_list("secret_encrypted", flat=True))
    good = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()[:40], *good]

    with pytest.raises(CommandError, match="holds a value that is not a Fernet key"):
        call_command("encryption_keys_rotate")

    settings.WEBHOOKS_ENCRYPTION_KEYS = good
    assert list(SigningSecret.objects.values_list("secret_encrypted", flat=True)) == before
