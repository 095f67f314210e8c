"""A webhook's delivery profile: chosen in the API and the admin, checked with the settings it
constrains, and what the webhook then receives and previews."""

import json

import pytest
from django.core.exceptions import ValidationError

from subscriptions.models import Profile, Subscription
from subscriptions.selectors import subscription_event_types, subscription_ids_receiving
from subscriptions.services import (
    subscription_body_preview,
    subscription_create,
    subscription_update,
)
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.bodies import PRESETS
from webhook_engine.vendors import PROFILES

pytestmark = pytest.mark.django_db

EDUSIGN = {"name": "Attendance", "url": "https://sis.example.org/edusign", "profile": "edusign"}


def test_the_setting_and_the_engine_name_the_same_profiles():
    assert list(Profile.values) == list(PROFILES)
    assert list(Profile.labels) == [profile.label for profile in PROFILES.values()]


def test_a_webhook_is_standard_webhooks_unless_it_chooses_a_vendor(school):
    webhook = subscription_create(school=school, name="A", url="http://127.0.0.1/", topics=["*"])

    assert webhook.profile == "standard"


def test_a_vendor_profile_receives_only_the_vendors_events_its_patterns_match(school):
    webhook = subscription_create(school=school, topics=["course.*", "student.signed"], **EDUSIGN)

    assert subscription_event_types(subscription=webhook) == [
        "course.created",
        "course.deleted",
        "course.ended",
        "course.locked",
        "course.started",
        "course.updated",
        "student.signed",
    ]
    assert webhook.matches("course.locked")
    assert not webhook.matches("course.published")
    everyone = SubscriptionFactory(school=school, topics=["course.*"])
    assert subscription_ids_receiving(
        subscriptions=Subscription.objects.all(), event_type="course.published"
    ) == [everyone.pk]


@pytest.mark.parametrize(
    ("settings", "errors"),
    [
        (
            {"topics": ["course.*"], "body_template": '{"type": {{ type|json }}}'},
            {
                "body_template": [
                    "The Edusign profile sends Edusign's own body: clear the webhook body, or "
                    "choose the Standard Webhooks profile for a body of your own."
                ]
            },
        ),
        (
            {"topics": ["course.*"], "content_type": "xml"},
            {
                "content_type": [
                    "Edusign sends JSON only: choose JSON, or the Standard Webhooks or BrainCert "
                    "profile for XML."
                ]
            },
        ),
        (
            {"topics": ["course.created", "user.created", "webinar.*"]},
            {
                "topics": [
                    "Edusign has no event for user.created: remove it, or choose the Standard "
                    "Webhooks profile.",
                    "'webinar.*' matches none of Edusign's events (absence.justified, "
                    "absence_report.generated, absence_request.created, app_parameters.updated, "
                    "course.created, course.deleted, course.ended, course.locked, course.started, "
                    "course.updated, cron.midnight, document.completed, document.signed, "
                    "email.invalidated, group.created, group.deleted, group.restored, "
                    "group.updated, student.created, student.deleted, student.restored, "
                    "student.signed, student.updated, survey.answered, teacher.created, "
                    "teacher.deleted, teacher.restored, teacher.signed, teacher.updated, "
                    "zoom_meeting.created).",
                ]
            },
        ),
        (
            {"topics": ["course.*"], "profile": "slack"},
            {
                "profile": [
                    "'slack' is not a delivery profile; choose one of standard, edusign, "
                    "braincert, edume, edudip."
                ]
            },
        ),
    ],
)
def test_settings_a_vendor_profile_cannot_take_are_refused_and_nothing_is_saved(
    school, settings, errors
):
    with pytest.raises(ValidationError) as raised:
        subscription_create(school=school, **{**EDUSIGN, **settings})

    assert {field: raised.value.message_dict[field] for field in errors} == errors
    assert not Subscription.objects.exists()


def test_the_edudip_profile_needs_the_platforms_ecdsa_key(school, settings):
    settings.WEBHOOKS_ECDSA_KEY = ""

    with pytest.raises(ValidationError) as raised:
        subscription_create(
            school=school,
            name="Webinars",
            url="https://crm.example.org/",
            topics=["webinar.*"],
            profile="edudip",
        )

    assert raised.value.message_dict == {
        "profile": [
            "The edudip profile signs with the platform's ECDSA key, and none is configured "
            "(WEBHOOKS_ECDSA_KEY)."
        ]
    }
    assert not Subscription.objects.exists()


def test_switching_to_a_vendor_asks_to_clear_the_template_first(school):
    webhook = subscription_create(
        school=school,
        name="CRM",
        url="https://crm.example.org/",
        topics=["user.*"],
        body_template=PRESETS["braincert"]["json"],
    )

    with pytest.raises(ValidationError) as raised:
        subscription_update(subscription=webhook, profile="braincert")
    subscription_update(subscription=webhook, profile="braincert", body_template="")

    assert list(raised.value.message_dict) == ["body_template"]
    webhook.refresh_from_db()
    assert (webhook.profile, webhook.body_template) == ("braincert", "")


def test_custom_headers_cannot_take_a_vendors_header_names(school):
    with pytest.raises(ValidationError) as raised:
        subscription_create(
            school=school,
            topics=["course.*"],
            custom_headers={"x-edusign-hmac": "forged", "X-Edudip-Signature": "forged"},
            **EDUSIGN,
        )

    assert raised.value.message_dict["custom_headers"] == [
        "x-edusign-hmac is set by the webhook itself and cannot be a custom header.",
        "X-Edudip-Signature is set by the webhook itself and cannot be a custom header.",
    ]


def test_the_preview_is_the_vendors_body_byte_for_byte(school):
    preview = subscription_body_preview(
        body_template="",
        content_type="json",
        event_type="student.signed",
        school=school,
        profile="edusign",
    )

    body = json.loads(preview)
    assert list(body)[:2] == ["type", "appId"]
    assert body["type"] == "on_student_sign"
    assert body["student"]["FIRSTNAME"] == "Jean"
    assert ", " not in preview  # compact, as it is sent


def test_the_preview_of_a_type_the_vendor_lacks_says_so(school):
    with pytest.raises(ValidationError) as raised:
        subscription_body_preview(
            body_template="",
            content_type="json",
            event_type="webinar.created",
            school=school,
            profile="edume",
        )

    assert raised.value.message_dict == {
        "event_type": [
            "eduMe has no event for webinar.created; a webhook with the eduMe profile receives "
            "only eduMe's events."
        ]
    }


def test_the_api_sets_and_shows_the_profile_and_refuses_it_with_a_template(api):
    created = api.post(
        "/api/v1/subscriptions/",
        {**EDUSIGN, "topics": ["student.*"]},
        format="json",
    )
    refused = api.patch(
        f"/api/v1/subscriptions/{created.json()['id']}/",
        {"body_template": "{}"},
        format="json",
    )

    assert created.status_code == 201
    assert created.json()["profile"] == "edusign"
    assert refused.status_code == 400
    assert list(refused.json()["errors"]) == ["body_template"]
    assert Subscription.objects.get().body_template == ""


def test_the_api_preview_uses_the_webhooks_profile_or_the_one_asked_for(api, school):
    webhook = SubscriptionFactory(
        school=school, topics=["*"], body_template='{"mine": {{ type|json }}}'
    )
    url = f"/api/v1/subscriptions/{webhook.pk}/preview/"

    own = api.post(url, {"event_type": "course.created"}, format="json").json()
    edume = api.post(
        url, {"event_type": "course.created", "profile": "edume"}, format="json"
    ).json()

    assert json.loads(own["body"]) == {"mine": "course.created"}
    assert json.loads(edume["body"])["type"] == "course.added"
    assert json.loads(edume["body"])["payload"]["version"] == 1


def test_the_admin_places_the_profile_and_previews_with_it(client, school, school_admin):
    client.force_login(school_admin)

    page = client.get("/admin/subscriptions/subscription/add/")
    preview = client.post(
        "/admin/subscriptions/subscription/preview/",
        {
            "school": school.pk,
            "body_template": "",
            "content_type": "json",
            "event_type": "webinar.created",
            "profile": "edudip",
        },
    )
    added = client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "Webinars",
            "url": "https://crm.example.org/webinars",
            "topics_patterns": "webinar.*",
            "content_type": "json",
            "profile": "edudip",
            "is_active": "on",
        },
    )

    assert b">Delivery profile:</label>" in page.content
    assert b'<option value="edudip">edudip</option>' in page.content
    assert json.loads(preview.json()["body"])["type"] == "webinar.created"
    assert added.status_code == 302
    assert Subscription.objects.get().profile == "edudip"
    listing = client.get("/admin/subscriptions/subscription/?profile__exact=edudip")
    assert "JSON as edudip" in listing.content.decode()
