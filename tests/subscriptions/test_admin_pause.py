"""Pausing and resuming webhooks in the admin: the list's actions, the page's button, the badge."""

import datetime as dt
import zoneinfo

import pytest
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from deliveries.services import event_fan_out, subscription_pause
from events.services import event_publish
from subscriptions.models import Subscription
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/subscriptions/subscription/"


def test_the_list_actions_pause_and_resume_the_selected_webhooks(client, school, school_admin):
    client.force_login(school_admin)
    webhooks = [SubscriptionFactory(school=school) for _ in range(2)]
    selected = [str(webhook.pk) for webhook in webhooks]

    paused = client.post(
        LIST, {"action": "pause_selected", "index": "0", "_selected_action": selected}, follow=True
    )

    assert [str(m) for m in paused.context["messages"]] == [
        "2 webhooks paused: their events are kept until they are resumed."
    ]
    assert Subscription.objects.filter(paused_at__isnull=False, is_active=True).count() == 2
    listed = client.get(LIST).content.decode()
    assert listed.count('class="webhook-state-paused">Paused</strong>') == 2
    assert "until resumed" in listed
    assert client.get(LIST + "?state=paused").context["cl"].result_count == 2

    resumed = client.post(
        LIST, {"action": "resume_selected", "index": "0", "_selected_action": selected}, follow=True
    )

    assert [str(m) for m in resumed.context["messages"]] == [
        "2 webhooks resumed; 0 held deliveries are being sent, oldest first."
    ]
    assert not Subscription.objects.filter(paused_at__isnull=False).exists()
    assert AuditEntry.objects.filter(action=AuditAction.WEBHOOK_RESUMED).count() == 2


def test_the_page_pauses_until_a_time_in_the_schools_zone_then_resumes(
    client, school, school_admin
):
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school, name="CRM")
    page = f"{LIST}{webhook.pk}/change/"
    url = f"{LIST}{webhook.pk}/pause/"
    until = (timezone.localtime() + dt.timedelta(days=2)).replace(second=0, microsecond=0)

    assert f'href="{url}">Pause</a>' in client.get(page).content.decode()
    done = client.post(url, {"_pause": "1", "resume_at": until.strftime("%Y-%m-%dT%H:%M")})

    assert done["Location"] == page
    webhook.refresh_from_db()
    expected = until.replace(tzinfo=zoneinfo.ZoneInfo(school.timezone))
    assert webhook.resume_at == expected
    shown = client.get(page).content.decode()
    assert f'href="{url}">Resume</a>' in shown
    assert 'class="webhook-state-paused">Paused</strong>' in shown

    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    event_fan_out(event_id=event.id)
    asked = client.get(url).content.decode()
    assert "1 delivery is held." in asked
    resumed = client.post(url, {"_resume": "1"}, follow=True)

    assert [str(m) for m in resumed.context["messages"]] == [
        "The webhook “CRM” is resumed: 1 delivery held while it was paused is being sent."
    ]
    webhook.refresh_from_db()
    assert webhook.paused_at is None
    assert webhook.catching_up_since is not None


def test_a_resume_time_in_the_past_is_a_form_error_and_nothing_changes(
    client, school, school_admin
):
    client.force_login(school_admin)
    webhook = SubscriptionFactory(school=school)
    past = timezone.localtime() - dt.timedelta(hours=1)

    response = client.post(
        f"{LIST}{webhook.pk}/pause/", {"_pause": "1", "resume_at": past.strftime("%Y-%m-%dT%H:%M")}
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "resume_at": ["The time to resume must be in the future."]
    }
    webhook.refresh_from_db()
    assert webhook.paused_at is None


def test_a_school_admin_cannot_pause_or_resume_another_schools_webhook(
    client, school, other_school, school_admin
):
    client.force_login(school_admin)
    theirs = SubscriptionFactory(school=other_school)
    paused_theirs = SubscriptionFactory(school=other_school)
    subscription_pause(subscription=paused_theirs, actor=None)

    page = client.post(f"{LIST}{theirs.pk}/pause/", {"_pause": "1"})
    client.post(f"{LIST}{paused_theirs.pk}/pause/", {"_resume": "1"})
    client.post(
        LIST,
        {"action": "pause_selected", "index": "0", "_selected_action": [str(theirs.pk)]},
    )

    assert page.status_code in (302, 403, 404)
    theirs.refresh_from_db()
    paused_theirs.refresh_from_db()
    assert theirs.paused_at is None
    assert paused_theirs.paused_at is not None
