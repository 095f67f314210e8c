"""Who sees what in the admin: school admins see their schools only, everywhere; support staff
see every school, retrigger and inspect, never a secret; every POST needs its CSRF token."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus
from events.models import ScheduledEvent
from schools.models import SCHOOL_ADMINS_GROUP, SUPPORT_GROUP, ApiKey
from schools.services import ADMIN_GROUP_PERMISSIONS, api_key_create
from subscriptions.models import Subscription
from subscriptions.selectors import signing_secret_current
from tests.deliveries.factories import delivery_create
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(school, other_school, school_admin, other_school_admin):
    """One webhook, delivery, event, scheduled event and API key in each of two schools."""
    rows = {}
    for key, owner, name in ((("mine"), school, "CRM"), ("theirs", other_school, "ERP")):
        subscription = SubscriptionFactory(
            school=owner, name=name, custom_headers={"X-Api-Token": "receiver-token-123"}
        )
        delivery = delivery_create(subscription)
        rows[key] = {
            "subscription": subscription,
            "delivery": delivery,
            "attempt": delivery.attempt_log.get(),
            "event": delivery.event,
            "scheduled": ScheduledEvent.objects.create(
                school=owner,
                type_id="course.started",
                data={"course": {"id": "c-1"}},
                due_at=timezone.now() + dt.timedelta(days=1),
                key=f"{name}-start",
            ),
            "api_key": api_key_create(school=owner, name=f"{name} key")[0],
            "school": owner,
        }
    return rows


def _object_urls(row: dict) -> list[str]:
    subscription, delivery = row["subscription"].pk, row["delivery"].pk
    return [
        f"/admin/subscriptions/subscription/{subscription}/change/",
        f"/admin/subscriptions/subscription/{subscription}/history/",
        f"/admin/subscriptions/subscription/{subscription}/delete/",
        f"/admin/subscriptions/subscription/{subscription}/send-test/",
        f"/admin/subscriptions/subscription/{subscription}/secret/",
        f"/admin/subscriptions/subscription/{subscription}/rotate-secret/",
        f"/admin/subscriptions/subscription/{subscription}/recover/",
        f"/admin/deliveries/delivery/{delivery}/change/",
        f"/admin/deliveries/deliveryattempt/{row['attempt'].pk}/change/",
        f"/admin/events/event/{row['event'].pk}/change/",
        f"/admin/events/scheduledevent/{row['scheduled'].pk}/change/",
        f"/admin/schools/school/{row['school'].pk}/change/",
        f"/admin/schools/apikey/{row['api_key'].pk}/change/",
    ]


LISTS = [
    "/admin/subscriptions/subscription/",
    "/admin/deliveries/delivery/",
    "/admin/events/event/",
    "/admin/events/scheduledevent/",
    "/admin/schools/school/",
    "/admin/schools/apikey/",
]


def test_the_groups_have_exactly_the_permissions_of_the_matrix(admin_groups):
    for name in (SCHOOL_ADMINS_GROUP, SUPPORT_GROUP):
        group = Group.objects.get(name=name)
        granted = {
            f"{app_label}.{codename}"
            for app_label, codename in group.permissions.values_list(
                "content_type__app_label", "codename"
            )
        }
        assert granted == set(ADMIN_GROUP_PERMISSIONS[name])
    support = set(ADMIN_GROUP_PERMISSIONS[SUPPORT_GROUP])
    assert "subscriptions.manage_secret_subscription" not in support
    assert "deliveries.retrigger_delivery" in support
    assert not {p for p in support if p.startswith("subscriptions.change")}
    assert not {p for p in support if p.endswith(("add_apikey", "change_apikey"))}


def test_a_school_admin_sees_only_their_schools_rows_in_every_list(client, world, school_admin):
    client.force_login(school_admin)

    for url in LISTS:
        page = client.get(url).content.decode()
        assert "Collège Jean Moulin" not in page, url
        assert "ERP" not in page, url
    assert "CRM" in client.get("/admin/subscriptions/subscription/").content.decode()
    deliveries = client.get("/admin/deliveries/delivery/").content.decode()
    assert str(world["mine"]["delivery"].pk) in deliveries
    assert str(world["theirs"]["delivery"].pk) not in deliveries


def test_another_schools_objects_are_a_404_like_objects_that_do_not_exist(
    client, world, school_admin
):
    client.force_login(school_admin)

    for url in _object_urls(world["theirs"]):
        assert client.get(url).status_code == 404, url
        assert client.post(url).status_code == 404, url
    for url in _object_urls(world["mine"]):
        if url.endswith("/delete/"):
            continue
        # (an attempt's page is its place on its delivery's page)
        assert client.get(url, follow=True).status_code == 200, url
    retrigger = f"/admin/deliveries/delivery/{world['theirs']['delivery'].pk}/retrigger/"
    assert client.post(retrigger).status_code == 404


def test_filters_choices_and_autocomplete_offer_only_the_users_schools(client, world, school_admin):
    client.force_login(school_admin)

    deliveries = client.get("/admin/deliveries/delivery/").content.decode()
    add = client.get("/admin/subscriptions/subscription/add/").content.decode()
    key_add = client.get("/admin/schools/apikey/add/").content.decode()
    schools = client.get(
        "/admin/autocomplete/",
        {"app_label": "schools", "model_name": "apikey", "field_name": "school", "term": ""},
    ).json()
    subscriptions = client.get(
        "/admin/autocomplete/",
        {"app_label": "deliveries", "model_name": "delivery", "field_name": "subscription"},
    ).json()

    assert f"subscription={world['mine']['subscription'].pk}" in deliveries
    assert f"subscription={world['theirs']['subscription'].pk}" not in deliveries
    assert "Collège Jean Moulin" not in add + key_add
    assert [r["text"] for r in schools["results"]] == ["Lycée Victor Hugo"]
    assert [r["text"] for r in subscriptions["results"]] == ["CRM"]


def test_another_schools_id_in_a_filter_shows_nothing(client, world, school_admin):
    client.force_login(school_admin)
    theirs = world["theirs"]

    by_webhook = client.get(
        "/admin/deliveries/delivery/", {"subscription": theirs["subscription"].pk}
    )
    by_school = client.get("/admin/deliveries/delivery/", {"school": theirs["school"].pk})
    by_search = client.get("/admin/deliveries/delivery/", {"q": str(theirs["delivery"].pk)})

    assert "0 deliveries" in by_webhook.content.decode()
    assert str(theirs["delivery"].pk) not in by_school.content.decode()
    assert "0 deliveries" in by_search.content.decode()


def test_actions_with_forged_ids_of_another_school_touch_nothing(client, world, school_admin):
    client.force_login(school_admin)
    theirs = world["theirs"]
    secret_before = signing_secret_current(subscription=theirs["subscription"])
    Subscription.objects.filter(pk=theirs["subscription"].pk).update(is_active=False)

    retrigger = client.post(
        "/admin/deliveries/delivery/",
        {
            "action": "retrigger_selected",
            "index": "0",
            "_selected_action": [str(theirs["delivery"].pk)],
            "confirm": "yes",
        },
        follow=True,
    )
    for action in ("rotate_secrets", "enable_selected"):
        client.post(
            "/admin/subscriptions/subscription/",
            {"action": action, "index": "0", "_selected_action": [str(theirs["subscription"].pk)]},
        )
    client.post(
        "/admin/schools/apikey/",
        {"action": "revoke", "index": "0", "_selected_action": [str(theirs["api_key"].pk)]},
    )

    assert [str(m) for m in retrigger.context["messages"]] == [
        "None of the selected deliveries is in the log any more (deleted with their webhook, or "
        "pruned): nothing was sent."
    ]
    assert Delivery.objects.get(pk=theirs["delivery"].pk).status == DeliveryStatus.FAILED
    assert signing_secret_current(subscription=theirs["subscription"]) == secret_before
    assert Subscription.objects.get(pk=theirs["subscription"].pk).is_active is False
    assert ApiKey.objects.get(pk=theirs["api_key"].pk).revoked_at is None


def test_the_preview_refuses_another_schools_id(client, world, school_admin):
    client.force_login(school_admin)

    response = client.post(
        "/admin/subscriptions/subscription/preview/",
        {"school": world["theirs"]["school"].pk, "event_type": "course.created"},
    )

    assert response.status_code == 400
    assert response.json() == {"error": "Choose the school first."}


def test_support_sees_every_school_and_retriggers_but_never_reads_or_changes_a_secret(
    client, world, support_user
):
    client.force_login(support_user)
    mine = world["mine"]
    subscription, delivery = mine["subscription"], mine["delivery"]

    listing = client.get("/admin/subscriptions/subscription/").content.decode()
    page = client.get(f"/admin/subscriptions/subscription/{subscription.pk}/change/")
    detail = client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()
    retriggered = client.post(f"/admin/deliveries/delivery/{delivery.pk}/retrigger/", follow=True)
    secret = client.post(f"/admin/subscriptions/subscription/{subscription.pk}/secret/")
    rotate = client.post(f"/admin/subscriptions/subscription/{subscription.pk}/rotate-secret/")
    change = client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/change/",
        {"name": "Hijacked", "url": "https://evil.example.org/", "topics_patterns": "*"},
    )
    new_key = client.post("/admin/schools/apikey/add/", {"school": mine["school"].pk, "name": "x"})

    assert "CRM" in listing
    assert "ERP" in listing
    assert page.status_code == 200
    html = page.content.decode()
    assert "Hidden: only the school&#x27;s admins can see and rotate the signing secret." in html
    assert "webhook-secret-reveal" not in html
    assert "receiver-token-123" not in html
    assert "X-Api-Token: ••••••••" in html
    assert "receiver-token-123" not in detail
    assert "X-Api-Token: [hidden]" in detail
    assert [str(m) for m in retriggered.context["messages"]] == [
        "Sending it now: the new attempt appears below within moments."
    ]
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING
    assert (secret.status_code, rotate.status_code, change.status_code) == (403, 403, 403)
    assert new_key.status_code == 403
    assert Subscription.objects.get(pk=subscription.pk).name == "CRM"
    assert ApiKey.objects.filter(school=mine["school"]).count() == 1


def test_a_school_admin_reads_custom_header_values_and_reveals_the_secret(
    client, world, school_admin
):
    client.force_login(school_admin)
    mine = world["mine"]

    detail = client.get(f"/admin/deliveries/delivery/{mine['delivery'].pk}/change/")
    secret = client.post(
        f"/admin/subscriptions/subscription/{mine['subscription'].pk}/secret/",
        HTTP_ACCEPT="application/json",
    )

    assert "X-Api-Token: receiver-token-123" in detail.content.decode()
    assert secret.json() == {"secret": signing_secret_current(subscription=mine["subscription"])}
    assert secret["Cache-Control"].startswith("max-age=0")


@pytest.mark.parametrize(
    "url",
    [
        "/admin/deliveries/delivery/{delivery}/retrigger/",
        "/admin/subscriptions/subscription/{subscription}/send-test/",
        "/admin/subscriptions/subscription/{subscription}/secret/",
        "/admin/subscriptions/subscription/{subscription}/rotate-secret/",
        "/admin/subscriptions/subscription/{subscription}/recover/",
        "/admin/subscriptions/subscription/preview/",
    ],
)
def test_posts_without_a_csrf_token_are_refused(url, world, school_admin, support_user):
    mine = world["mine"]
    secret_before = signing_secret_current(subscription=mine["subscription"])
    for user in (school_admin, support_user):
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)

        response = client.post(
            url.format(delivery=mine["delivery"].pk, subscription=mine["subscription"].pk),
            {"event_type": "course.created", "since": "2020-01-01T00:00"},
        )

        assert response.status_code == 403
    assert Delivery.objects.get(pk=mine["delivery"].pk).status == DeliveryStatus.FAILED
    assert Delivery.objects.count() == 2  # no test delivery either
    assert signing_secret_current(subscription=mine["subscription"]) == secret_before


def test_a_bulk_action_without_a_csrf_token_is_refused(world, school_admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(school_admin)

    response = client.post(
        "/admin/deliveries/delivery/",
        {
            "action": "retrigger_selected",
            "index": "0",
            "_selected_action": [str(world["mine"]["delivery"].pk)],
            "confirm": "yes",
        },
    )

    assert response.status_code == 403
    assert Delivery.objects.get(pk=world["mine"]["delivery"].pk).status == DeliveryStatus.FAILED


def test_superusers_see_every_school(admin_client, world):
    listing = admin_client.get("/admin/subscriptions/subscription/").content.decode()

    assert "CRM" in listing
    assert "ERP" in listing
    for url in _object_urls(world["theirs"]):
        if not url.endswith("/delete/"):
            assert admin_client.get(url, follow=True).status_code == 200, url


def test_a_member_without_staff_status_cannot_enter_the_admin(client, school, django_user_model):
    from schools.models import Membership

    user = django_user_model.objects.create_user("eve", "eve@example.org", "pw")
    Membership.objects.create(user=user, school=school)
    client.force_login(user)

    response = client.get("/admin/subscriptions/subscription/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_support_sends_a_test_without_seeing_custom_header_values(
    client, school, support_user, receiver
):
    subscription = SubscriptionFactory(
        school=school,
        url=receiver.url("/hook"),
        topics=["course.*"],
        custom_headers={"X-Api-Token": "receiver-token-123"},
    )
    client.force_login(support_user)

    page = client.post(
        f"/admin/subscriptions/subscription/{subscription.pk}/send-test/",
        {"event_type": "course.created"},
    ).content.decode()

    assert "X-Api-Token: [hidden]" in page
    assert "receiver-token-123" not in page
    [request] = receiver.received("/hook")
    assert request.headers["x-api-token"] == "receiver-token-123"


def test_school_admins_and_support_read_the_event_catalog(
    client, catalog, school_admin, support_user
):
    for user in (school_admin, support_user):
        client.force_login(user)

        reference = client.get("/admin/events/eventtype/reference/").content.decode()
        types = client.get("/admin/events/eventtype/")

        assert "<h3><code>course.created</code></h3>" in reference
        assert "JSON Schema of <code>data</code>" in reference
        assert types.status_code == 200
        assert client.get("/admin/events/eventtype/add/").status_code == 403


def test_the_rotate_action_needs_what_the_rotate_page_needs_an_admin_of_the_school(
    client, world, support_user
):
    from django.contrib.auth.models import Permission

    from subscriptions.models import SigningSecret

    # Given the permission by hand (a superuser's slip on the user's page), support staff still
    # administer no school: the rotate page refuses them, and so does the list's action.
    support_user.user_permissions.add(Permission.objects.get(codename="manage_secret_subscription"))
    client.force_login(support_user)
    subscription = world["mine"]["subscription"]

    page = client.post(f"/admin/subscriptions/subscription/{subscription.pk}/rotate-secret/")
    action = client.post(
        "/admin/subscriptions/subscription/",
        {"action": "rotate_secrets", "_selected_action": [str(subscription.pk)]},
    )

    assert page.status_code == 403
    assert action.status_code == 403
    assert SigningSecret.objects.filter(subscription=subscription).count() == 1
