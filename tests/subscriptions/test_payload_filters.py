"""A webhook's payload filter on save: checked for its shape and against the schemas and samples
of the event types the webhook receives, every problem at once, the same in the admin and the
API; read and written through the API; shown in plain words on the settings page."""

import html

import pytest
from django.core.exceptions import ValidationError

from subscriptions.models import Subscription
from subscriptions.services import subscription_create, subscription_update
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

GROUP_12 = {"field": "group.id", "op": "eq", "value": 12}
NEW = {
    "name": "Group 12",
    "url": "https://crm.example.org/hooks",
    "topics": ["course.created", "course.updated"],
}
TWO_MISTAKES = {
    "all": [
        {"field": "coures.id", "op": "eq", "value": 1},
        {"field": "course.id", "op": "eq", "value": True},
        GROUP_12,
    ]
}
TWO_MISTAKES_ERRORS = [
    "“coures.id is 1”: the selected event types have no field coures.id.",
    "“course.id is true” can never hold: in the selected event types course.id cannot have "
    "that value.",
]


def test_a_valid_filter_is_saved_and_none_means_every_event(school):
    webhook = subscription_create(school=school, **NEW, payload_filter=GROUP_12)
    plain = subscription_create(school=school, **{**NEW, "name": "All"})

    assert Subscription.objects.get(pk=webhook.pk).payload_filter == GROUP_12
    assert Subscription.objects.get(pk=plain.pk).payload_filter is None


def test_a_typo_and_an_impossible_value_are_refused_together_naming_each_condition(school):
    with pytest.raises(ValidationError) as raised:
        subscription_create(school=school, **NEW, payload_filter=TWO_MISTAKES)

    assert raised.value.message_dict == {"payload_filter": TWO_MISTAKES_ERRORS}
    assert not Subscription.objects.exists()


def test_a_bad_shape_is_refused_with_every_problem_and_other_fields_problems_too(school):
    with pytest.raises(ValidationError) as raised:
        subscription_create(
            school=school,
            **{**NEW, "custom_headers": {"Host": "x"}},
            payload_filter={"any": [{"field": "group.id", "op": "like"}, {"all": []}]},
        )

    assert raised.value.message_dict["payload_filter"] == [
        'any[0]: "like" is not a comparison; use one of eq, ne, in, not_in, gt, gte, lt, lte, '
        "contains, starts_with, ends_with, exists.",
        "any[1]: all needs a non-empty list of conditions.",
    ]
    assert "custom_headers" in raised.value.message_dict


def test_the_filter_is_checked_again_when_the_topics_change(school):
    webhook = subscription_create(school=school, **NEW, payload_filter=GROUP_12)

    with pytest.raises(ValidationError) as raised:
        subscription_update(subscription=webhook, topics=["student.created"])

    assert raised.value.message_dict == {
        "payload_filter": ["“group.id is 12”: the selected event types have no field group.id."]
    }
    assert Subscription.objects.get(pk=webhook.pk).topics == NEW["topics"]


def test_the_api_reads_and_writes_the_filter(api, school):
    created = api.post("/api/v1/subscriptions/", {**NEW, "payload_filter": GROUP_12}, format="json")
    assert created.status_code == 201
    assert created.json()["payload_filter"] == GROUP_12
    url = f"/api/v1/subscriptions/{created.json()['id']}/"

    cleared = api.patch(url, {"payload_filter": None}, format="json")

    assert cleared.status_code == 200
    assert cleared.json()["payload_filter"] is None
    assert api.get(url).json()["payload_filter"] is None
    assert Subscription.objects.get().payload_filter is None


def test_the_api_refuses_a_bad_filter_with_a_400_and_the_admin_with_the_same_words(
    api, admin_client, school
):
    response = api.post(
        "/api/v1/subscriptions/", {**NEW, "payload_filter": TWO_MISTAKES}, format="json"
    )
    page = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": NEW["name"],
            "url": NEW["url"],
            "topics_patterns": " ".join(NEW["topics"]),
            "content_type": "json",
            "payload_filter": '{"all": [{"field": "coures.id", "op": "eq", "value": 1}, '
            '{"field": "course.id", "op": "eq", "value": true}]}',
        },
    ).content.decode()

    assert response.status_code == 400
    assert response.json() == {"errors": {"payload_filter": TWO_MISTAKES_ERRORS}}
    for message in TWO_MISTAKES_ERRORS:
        assert html.escape(message) in page
    assert not Subscription.objects.exists()


def test_the_settings_page_shows_the_filter_in_plain_words_and_which_samples_pass(
    admin_client, school
):
    webhook = SubscriptionFactory(
        school=school,
        topics=["course.created", "group.created"],
        payload_filter={"any": [GROUP_12, {"field": "group.id", "op": "eq", "value": 12779}]},
    )

    page = admin_client.get(f"/admin/subscriptions/subscription/{webhook.pk}/change/")

    text = page.content.decode()
    assert page.status_code == 200
    assert "At least one of these holds:" in text
    assert "group.id is 12779" in text
    # The course.created sample's group is 12779; group.created's sample is another group.
    assert "Samples that pass: course.created." in text
    assert "Samples that do not: group.created." in text


def test_a_filter_nested_past_what_json_can_read_is_a_form_error_kept_as_typed(
    admin_client, school
):
    nested = "[" * 5000 + "]" * 5000

    page = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": NEW["name"],
            "url": "not a url",
            "topics_patterns": " ".join(NEW["topics"]),
            "content_type": "json",
            "payload_filter": nested,
        },
    )

    text = page.content.decode()
    assert page.status_code == 200
    assert "The JSON is nested more than 32 levels deep." in text
    assert "Enter a valid URL." in text  # every problem at once
    assert f">\n{nested}</textarea>" in text
    assert not Subscription.objects.exists()


def test_a_webhook_without_a_filter_shows_an_empty_box_not_null(admin_client, school):
    """The help says "Empty: every event of the topics": the box is empty on the Add page and
    on the page of a webhook that has no filter, not the JSON word null."""
    webhook = SubscriptionFactory(school=school, topics=["course.created"])

    for url in (
        "/admin/subscriptions/subscription/add/",
        f"/admin/subscriptions/subscription/{webhook.pk}/change/",
    ):
        text = admin_client.get(url).content.decode()
        box = text.split('name="payload_filter"', 1)[1].split("</textarea>", 1)[0]
        assert box.rstrip().endswith(">"), (url, box)  # nothing typed in it
