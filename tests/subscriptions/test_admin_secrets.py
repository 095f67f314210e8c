"""What support staff cannot learn of a school's secrets, whatever page or URL they try."""

import base64

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import delivery_attempt, event_fan_out
from events.services import event_publish
from schools.models import Membership
from schools.services import school_admin_grant, school_admin_revoke, support_staff_grant
from subscriptions.services import subscription_create
from tests.receiver import Reply

pytestmark = pytest.mark.django_db

SECRETS = {"header": "tok-7f3a9c", "password": "correct-horse-battery"}


@pytest.fixture
def webhook(school, receiver):
    return subscription_create(
        school=school,
        name="Echo",
        url=receiver.url("/echo") + "?token=query-secret-42",
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="lms",
        basic_auth_password=SECRETS["password"],
        custom_headers={"X-Access-Key": SECRETS["header"]},
    )


def _echoing(receiver):
    """A receiver that echoes the request back, as httpbin or a request bin would."""
    credentials = base64.b64encode(f"lms:{SECRETS['password']}".encode()).decode()
    body = (
        f'{{"headers": {{"Authorization": "Basic {credentials}", '
        f'"X-Access-Key": "{SECRETS["header"]}"}}, "password": "{SECRETS["password"]}"}}'
    ).encode()
    receiver.script(
        "/echo?token=query-secret-42",
        default=Reply(status=200, body=body, headers={"X-Echo": SECRETS["header"]}),
    )
    return credentials


def _leaks(page: str, credentials: str) -> list[str]:
    return [
        secret
        for secret in (SECRETS["header"], SECRETS["password"], credentials, "query-secret-42")
        if secret in page
    ]


@pytest.mark.parametrize(
    "url",
    [
        "/admin/subscriptions/subscription/?custom_headers__X-Access-Key__startswith=t",
        "/admin/subscriptions/subscription/?custom_headers__X-Access-Key__regex=^t",
        "/admin/deliveries/delivery/?subscription__custom_headers__X-Access-Key__startswith=t",
        "/admin/deliveries/deliveryattempt/?request_headers__X-Access-Key__startswith=t",
        "/admin/deliveries/deliveryattempt/?response_body__contains=tok",
        "/admin/subscriptions/subscription/?basic_auth_password_encrypted__startswith=g",
    ],
)
def test_no_url_filter_can_read_a_secret_character_by_character(client, support_user, webhook, url):
    client.force_login(support_user)

    response = client.get(url)

    assert response.status_code == 400


def test_support_sees_neither_echoed_secrets_nor_url_tokens(
    client, support_user, webhook, receiver, school
):
    credentials = _echoing(receiver)
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    delivery_attempt(delivery_id=delivery_id)
    client.force_login(support_user)

    send_test = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/send-test/",
        {"event_type": "course.created"},
    ).content.decode()
    detail = client.get(f"/admin/deliveries/delivery/{delivery_id}/change/").content.decode()
    listing = client.get("/admin/subscriptions/subscription/").content.decode()
    settings_page = client.get(
        f"/admin/subscriptions/subscription/{webhook.pk}/change/"
    ).content.decode()

    assert "[hidden]" in send_test  # the answers are shown, scrubbed
    assert "[hidden]" in detail
    pages = {"send test": send_test, "detail": detail, "list": listing, "settings": settings_page}
    assert {name: _leaks(page, credentials) for name, page in pages.items()} == {
        name: [] for name in pages
    }
    assert Delivery.objects.filter(pk=delivery_id).exists()


def test_the_schools_own_admin_sees_the_answer_with_the_webhooks_secrets_redacted(
    client, school_admin, webhook, receiver, school
):
    credentials = _echoing(receiver)
    client.force_login(school_admin)

    send_test = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/send-test/",
        {"event_type": "course.created"},
    ).content.decode()

    # The answer is shown (it is the school's), but the log never keeps the webhook's secrets,
    # and the URL's token reads masked like every secret value of the settings.
    assert "X-Echo: [redacted]" in send_test
    assert "&quot;password&quot;: &quot;[redacted]&quot;" in send_test
    assert _leaks(send_test, credentials) == []
    attempt = DeliveryAttempt.objects.get(delivery__subscription=webhook)
    assert attempt.request_url == receiver.url("/echo") + "?token=[redacted]"


def test_one_account_cannot_be_both_support_staff_and_a_school_admin(
    school, support_user, school_admin
):
    with pytest.raises(ValidationError):
        school_admin_grant(user=support_user, school=school)
    with pytest.raises(ValidationError):
        support_staff_grant(user=school_admin)
    with pytest.raises(CommandError, match="is support staff"):
        call_command("staff_grant", support_user.username, "--school", school.slug)

    assert not Membership.objects.filter(user=support_user).exists()


def test_the_school_page_refuses_to_make_support_staff_a_school_admin(
    admin_client, school, support_user
):
    response = admin_client.post(
        f"/admin/schools/school/{school.pk}/change/",
        {
            "name": school.name,
            "slug": school.slug,
            "timezone": school.timezone,
            "language": school.language,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": support_user.pk,
            "memberships-0-role": "admin",
        },
    )

    assert response.status_code == 200
    assert "is support staff; a school admin must be another account." in response.content.decode()
    assert not Membership.objects.filter(user=support_user).exists()


def test_removing_the_last_school_takes_the_admin_rights_away(school, school_admin, client):
    school_admin_revoke(membership=Membership.objects.get(user=school_admin))
    client.force_login(school_admin)

    page = client.get("/admin/")

    school_admin.refresh_from_db()
    assert not school_admin.groups.filter(name="School admins").exists()
    assert "/admin/subscriptions/" not in page.content.decode()
