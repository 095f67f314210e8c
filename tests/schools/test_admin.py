"""Schools, their admins and their API keys in the admin; manage.py staff_grant."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from schools.models import SCHOOL_ADMINS_GROUP, SUPPORT_GROUP, ApiKey, Membership, PlatformKey
from schools.selectors import credential_find
from schools.services import api_key_create

pytestmark = pytest.mark.django_db


def test_a_school_admin_creates_a_key_and_sees_it_once(client, school, school_admin):
    client.force_login(school_admin)

    response = client.post("/admin/schools/apikey/add/", {"school": school.pk, "name": "CRM"})

    api_key = ApiKey.objects.get(name="CRM")
    key = response.context["key"]
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert key.startswith(api_key.prefix)
    assert credential_find(key=key) == api_key
    assert key not in "".join(str(value) for value in client.cookies.values())
    listing = client.get("/admin/schools/apikey/").content.decode()
    assert key not in listing
    assert f"{api_key.prefix}…" in listing
    assert key not in client.get(f"/admin/schools/apikey/{api_key.pk}/change/").content.decode()


@pytest.mark.parametrize(
    ("language", "title"),
    [("en", "API key created"), ("fr", "Clé d’API créée"), ("de", "API-Schlüssel angelegt")],
)
def test_the_page_of_a_new_key_writes_its_kind_as_the_language_does(
    client, school, school_admin, language, title
):
    """Only the first letter is made a capital: "API" stays as it is written ("Api key
    created", "Api-schlüssel angelegt" before)."""
    client.force_login(school_admin)

    response = client.post(
        "/admin/schools/apikey/add/",
        {"school": school.pk, "name": "CRM"},
        HTTP_ACCEPT_LANGUAGE=language,
    )

    assert response.context["title"] == title
    assert f"<h1>{title}</h1>" in response.text


def test_the_sixth_active_key_is_refused_in_the_form(client, school, school_admin):
    client.force_login(school_admin)
    for number in range(5):
        api_key_create(school=school, name=f"Key {number}")

    response = client.post("/admin/schools/apikey/add/", {"school": school.pk, "name": "CRM"})

    assert "Lycée Victor Hugo already has 5 active API keys; revoke one first." in response.text
    assert ApiKey.objects.count() == 5


def test_revoking_keys_is_an_action_that_reports_the_count(client, school, school_admin):
    client.force_login(school_admin)
    kept, key = api_key_create(school=school, name="Kept")
    revoked = [api_key_create(school=school, name=f"Old {n}")[0] for n in range(2)]

    response = client.post(
        "/admin/schools/apikey/",
        {"action": "revoke", "index": "0", "_selected_action": [str(k.pk) for k in revoked]},
        follow=True,
    )

    assert [str(m) for m in response.context["messages"]] == [
        "2 keys revoked; requests with them now get a 401."
    ]
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert credential_find(key=key) == kept


def test_support_staff_see_keys_but_neither_create_nor_revoke_them(client, school, support_user):
    client.force_login(support_user)
    api_key = api_key_create(school=school, name="CRM")[0]

    listing = client.get("/admin/schools/apikey/")
    add = client.post("/admin/schools/apikey/add/", {"school": school.pk, "name": "Mine"})
    revoke = client.post(
        "/admin/schools/apikey/",
        {"action": "revoke", "index": "0", "_selected_action": [str(api_key.pk)]},
    )

    assert listing.status_code == 200
    assert listing.context["action_form"] is None  # no action they may use
    assert add.status_code == 403
    assert revoke.status_code == 200  # the list again: no such action for them
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    assert ApiKey.objects.count() == 1


def test_platform_keys_are_for_superusers_only(client, admin_client, school_admin):
    created = admin_client.post("/admin/schools/platformkey/add/", {"name": "LMS"})
    client.force_login(school_admin)

    assert created.context["key"].startswith("whp_")
    assert PlatformKey.objects.get().name == "LMS"
    assert client.get("/admin/schools/platformkey/").status_code == 403


def test_staff_grant_makes_a_school_admin_or_support_staff(school, admin_groups, django_user_model):
    call_command("staff_grant", "ada", "--school", school.slug, "--email", "ada@example.org")
    call_command("staff_grant", "sam", "--support")

    ada = django_user_model.objects.get(username="ada")
    sam = django_user_model.objects.get(username="sam")
    assert ada.is_staff
    assert not ada.has_usable_password()
    assert list(ada.groups.values_list("name", flat=True)) == [SCHOOL_ADMINS_GROUP]
    assert Membership.objects.get(user=ada).school == school
    assert sam.is_staff
    assert list(sam.groups.values_list("name", flat=True)) == [SUPPORT_GROUP]
    with pytest.raises(CommandError, match=r"No school with the slug 'nowhere'\."):
        call_command("staff_grant", "ada", "--school", "nowhere")
    with pytest.raises(CommandError, match="Give --school"):
        call_command("staff_grant", "ada")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ada lovelace!"], "username: Enter a valid username"),
        (["a" * 151], "username: Ensure this value has at most 150 characters"),
        (["ada", "--email", "ada-at-example.org"], "email: Enter a valid email address"),
    ],
)
def test_staff_grant_refuses_a_username_or_email_the_admin_would_refuse(
    school, admin_groups, django_user_model, arguments, message
):
    """No user the admin could not save again (nor failure notices sent to no address), and no
    traceback from the database."""
    with pytest.raises(CommandError, match=message):
        call_command("staff_grant", *arguments, "--school", school.slug)

    assert not django_user_model.objects.exists()


def test_a_superuser_adds_a_school_admin_on_the_schools_page(
    admin_client, school, admin_groups, django_user_model
):
    user = django_user_model.objects.create_user("cleo", "cleo@example.org", "pw")

    admin_client.post(
        f"/admin/schools/school/{school.pk}/change/",
        {
            "name": school.name,
            "slug": school.slug,
            "timezone": school.timezone,
            "language": school.language,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": user.pk,
            "memberships-0-role": "admin",
        },
    )

    user.refresh_from_db()
    assert user.is_staff
    assert user.groups.get() == Group.objects.get(name=SCHOOL_ADMINS_GROUP)
    assert Membership.objects.get(user=user).school == school


def _user_page_post(admin_client, user, groups):
    joined = user.date_joined
    return admin_client.post(
        f"/admin/auth/user/{user.pk}/change/",
        {
            "username": user.username,
            "first_name": "",
            "last_name": "",
            "email": user.email,
            "is_active": "on",
            "is_staff": "on",
            "groups": [group.pk for group in groups],
            "date_joined_0": joined.strftime("%Y-%m-%d"),
            "date_joined_1": joined.strftime("%H:%M:%S"),
        },
    )


@pytest.mark.parametrize("who", ["school_admin", "support_user"])
def test_the_user_page_refuses_to_make_one_account_both_support_staff_and_a_school_admin(
    request, admin_client, who
):
    """As staff_grant and the schools page refuse: one account in both groups would see every
    school (support) with a school admin's rights to change webhooks (every school's)."""
    user = request.getfixturevalue(who)
    before = sorted(user.groups.values_list("name", flat=True))
    both = list(Group.objects.filter(name__in=[SUPPORT_GROUP, SCHOOL_ADMINS_GROUP]))

    response = _user_page_post(admin_client, user, both)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["groups"] == [
        "Support staff and school admins must be different accounts: choose one of the two groups."
    ]
    assert sorted(user.groups.values_list("name", flat=True)) == before


def test_the_user_page_refuses_support_staff_for_an_account_that_administers_a_school(
    admin_client, school_admin
):
    support = Group.objects.filter(name=SUPPORT_GROUP)

    response = _user_page_post(admin_client, school_admin, support)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["groups"] == [
        f"{school_admin} administers a school; support staff must be another account."
    ]
    assert list(school_admin.groups.values_list("name", flat=True)) == [SCHOOL_ADMINS_GROUP]


def test_the_user_page_still_saves_a_change_within_one_role(admin_client, support_user):
    support = Group.objects.filter(name=SUPPORT_GROUP)

    response = _user_page_post(admin_client, support_user, support)

    assert response.status_code == 302
    assert list(support_user.groups.values_list("name", flat=True)) == [SUPPORT_GROUP]
