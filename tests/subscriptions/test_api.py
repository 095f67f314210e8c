import datetime as dt
import json

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit.models import AuditAction, AuditEntry
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import event_fan_out, subscription_pause
from events.models import Event
from events.services import event_publish
from subscriptions import views as subscriptions_views
from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import signing_secret_current
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

NEW = {
    "name": "CRM",
    "url": "https://crm.example.org/hooks",
    "topics": ["course.*", "student.signed"],
    "content_type": "xml",
    "basic_auth_enabled": True,
    "basic_auth_username": "crm",
    "basic_auth_password": "s3cret",
    "custom_headers": {"X-Tenant": "42"},
}


def test_create_returns_the_signing_secret_once_and_never_the_password(api, school):
    response = api.post("/api/v1/subscriptions/", NEW, format="json")

    assert response.status_code == 201
    body = response.json()
    subscription = Subscription.objects.get(pk=body["id"])
    assert body["signing_secret"] == signing_secret_current(subscription=subscription)
    assert "basic_auth_password" not in body
    assert (body["name"], body["content_type"], body["topics"]) == (
        "CRM",
        "xml",
        ["course.*", "student.signed"],
    )
    assert subscription.school == school
    again = api.get(f"/api/v1/subscriptions/{subscription.pk}/").json()
    listed = api.get("/api/v1/subscriptions/").json()["results"][0]
    for shown in (again, listed):
        assert "signing_secret" not in shown
        assert "basic_auth_password" not in shown
        assert "s3cret" not in json.dumps(shown)
        assert shown["basic_auth_username"] == "crm"


def test_invalid_input_is_a_400_with_a_field_map(api):
    response = api.post(
        "/api/v1/subscriptions/",
        {**NEW, "url": "http://10.0.0.7/hook", "topics": ["grades.*"]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "errors": {
            "topics": ["'grades.*' matches no event type in the catalog."],
            "url": [
                "10.0.0.7 is a private-network address; webhooks are only sent to public addresses."
            ],
        }
    }
    assert Subscription.objects.count() == 0


def test_the_admin_and_the_api_refuse_the_same_input_with_the_same_message(
    api, admin_client, school
):
    bad = {"custom_headers": {"Content-Type": "text/plain"}}

    api_errors = api.post("/api/v1/subscriptions/", {**NEW, **bad}, format="json").json()
    page = admin_client.post(
        "/admin/subscriptions/subscription/add/",
        {
            "school": school.pk,
            "name": "CRM",
            "url": NEW["url"],
            "topics_patterns": " ".join(NEW["topics"]),
            "content_type": "json",
            "custom_headers": "Content-Type: text/plain",
        },
    ).content.decode()

    [message] = api_errors["errors"]["custom_headers"]
    assert message == "Content-Type is set by the webhook itself and cannot be a custom header."
    assert message in page


def test_a_missing_field_is_reported_by_name(api):
    response = api.post("/api/v1/subscriptions/", {"name": "CRM"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "url": ["This field is required."],
        "topics": ["This field is required."],
    }


def test_another_schools_webhook_is_a_404_everywhere(api, catalog):
    theirs = SubscriptionFactory(school=SchoolFactory(), url="https://x.example.org/")
    base = f"/api/v1/subscriptions/{theirs.pk}/"

    responses = [
        api.get(base),
        api.patch(base, {"name": "Mine now"}, format="json"),
        api.put(base, NEW, format="json"),
        api.delete(base),
        api.post(base + "rotate-secret/"),
        api.post(base + "test/", {"event_type": "course.created"}, format="json"),
        api.post(base + "recover/", {"since": "2026-01-01T00:00:00Z"}, format="json"),
        api.post(base + "preview/", {"event_type": "course.created"}, format="json"),
        api.post(base + "pause/"),
        api.post(base + "resume/"),
    ]

    assert [r.status_code for r in responses] == [404] * 10
    assert {json.dumps(r.json()) for r in responses} == {'{"detail": "Not found."}'}
    assert api.get("/api/v1/subscriptions/").json()["results"] == []
    assert Subscription.objects.get(pk=theirs.pk).name != "Mine now"
    assert Subscription.objects.get(pk=theirs.pk).paused_at is None


def test_an_update_that_changes_nothing_writes_nothing(api, school):
    """Its time of change stays, its encrypted URL is not sealed again (a page opened before
    would then read as outdated), and the audit trail has no entry for it."""
    given = {**NEW, "url": "https://crm.example.org/hooks?token=t0k"}
    created = api.post("/api/v1/subscriptions/", given, format="json").json()
    url = f"/api/v1/subscriptions/{created['id']}/"
    before = Subscription.objects.get(pk=created["id"])
    entries = AuditEntry.objects.count()

    same = api.patch(url, {"name": "CRM", "topics": NEW["topics"]}, format="json")
    unchanged = {key: value for key, value in given.items() if key != "basic_auth_password"}
    whole = api.put(url, unchanged, format="json")

    after = Subscription.objects.get(pk=created["id"])
    assert same.status_code == whole.status_code == 200, whole.json()
    assert same.json() == whole.json()
    assert same.json()["updated_at"] == created["updated_at"]
    assert (after.updated_at, after.url_encrypted) == (before.updated_at, before.url_encrypted)
    assert AuditEntry.objects.count() == entries
    renamed = api.patch(url, {"name": "CRM v2"}, format="json").json()
    assert renamed["updated_at"] > created["updated_at"]


def test_partial_update_keeps_the_password_unless_one_is_given(api, school):
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    url = f"/api/v1/subscriptions/{created['id']}/"

    renamed = api.patch(url, {"name": "CRM v2"}, format="json")
    subscription = Subscription.objects.get(pk=created["id"])
    encrypted = subscription.basic_auth_password_encrypted
    api.patch(url, {"basic_auth_password": "n3w"}, format="json")
    subscription.refresh_from_db()

    assert renamed.status_code == 200
    assert renamed.json()["name"] == "CRM v2"
    assert encrypted
    assert subscription.basic_auth_password_encrypted != encrypted


def test_a_name_another_request_takes_while_a_webhook_is_checked_is_a_400(api, school, monkeypatch):
    # Given another request that creates "CRM" just after this one checked the name was free
    check = Subscription.validate_constraints
    rivals = []

    def check_then_rival_commits(self, *args, **kwargs):
        check(self, *args, **kwargs)
        if not rivals:
            rivals.append(SubscriptionFactory(school=school, name="CRM"))

    monkeypatch.setattr(Subscription, "validate_constraints", check_then_rival_commits)

    # When this request creates its own "CRM"
    response = api.post("/api/v1/subscriptions/", NEW, format="json")

    # Then it gets the answer the check gives, and nothing of it is written
    assert response.status_code == 400
    assert response.json() == {
        "errors": {"__all__": ["Webhook with this School and Name already exists."]}
    }
    assert not Subscription.objects.exclude(pk=rivals[0].pk).exists()
    assert not AuditEntry.objects.filter(action=AuditAction.WEBHOOK_CREATED).exists()


def test_a_rename_to_a_name_another_request_takes_meanwhile_is_a_400(api, school, monkeypatch):
    # Given a webhook, and another request that renames a second one to "CRM v2" just after
    # this one checked that the name was free
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    other = SubscriptionFactory(school=school, name="Other")
    check = Subscription.validate_constraints

    def check_then_rival_commits(self, *args, **kwargs):
        check(self, *args, **kwargs)
        Subscription.objects.filter(pk=other.pk).update(name="CRM v2")

    monkeypatch.setattr(Subscription, "validate_constraints", check_then_rival_commits)

    # When this request renames the first one to "CRM v2"
    response = api.patch(
        f"/api/v1/subscriptions/{created['id']}/", {"name": "CRM v2"}, format="json"
    )

    # Then it is refused as the check refuses it, and the webhook keeps its name
    assert response.status_code == 400
    assert response.json() == {
        "errors": {"__all__": ["Webhook with this School and Name already exists."]}
    }
    assert Subscription.objects.get(pk=created["id"]).name == "CRM"


def _deleted_before(monkeypatch, service: str, webhook_id: str) -> None:
    """The view's ``service`` runs after another request deleted the webhook (which this one
    had already looked up)."""
    real = getattr(subscriptions_views, service)

    def deleted_first(**kwargs):
        Subscription.objects.filter(pk=webhook_id).delete()
        return real(**kwargs)

    monkeypatch.setattr(subscriptions_views, service, deleted_first)


@pytest.mark.parametrize("method", ["put", "patch"])
def test_an_update_of_a_webhook_deleted_since_it_was_looked_up_is_a_404(
    api, school, monkeypatch, method
):
    # Given a webhook that another request deletes right after this one looked it up
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    _deleted_before(monkeypatch, "subscription_update", created["id"])

    # When this request changes it
    response = getattr(api, method)(
        f"/api/v1/subscriptions/{created['id']}/", {**NEW, "name": "CRM v2"}, format="json"
    )

    # Then the webhook is not found, and it stays deleted
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert not Subscription.objects.exists()


def test_an_update_keeps_what_changed_since_the_webhook_was_looked_up(api, school, monkeypatch):
    # Given a webhook that, right after this request looked it up, another request pauses and
    # a third one gives a concurrency limit
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    update = subscriptions_views.subscription_update

    def changed_meanwhile(*, subscription, **kwargs):
        subscription_pause(subscription=Subscription.objects.get(pk=subscription.pk))
        update(subscription=Subscription.objects.get(pk=subscription.pk), max_concurrency=3)
        return update(subscription=subscription, **kwargs)

    monkeypatch.setattr(subscriptions_views, "subscription_update", changed_meanwhile)

    # When this request renames it
    response = api.patch(
        f"/api/v1/subscriptions/{created['id']}/", {"name": "CRM v2"}, format="json"
    )

    # Then the rename lands and the pause and the limit are kept, in the answer as in the row
    assert response.status_code == 200
    subscription = Subscription.objects.get(pk=created["id"])
    assert (subscription.name, subscription.max_concurrency) == ("CRM v2", 3)
    assert subscription.paused_at is not None
    assert (response.json()["max_concurrency"], response.json()["paused_at"]) == (
        3,
        subscription.paused_at.isoformat().replace("+00:00", "Z"),
    )


@pytest.mark.parametrize(
    ("service", "path", "body"),
    [
        ("subscription_secret_rotate", "rotate-secret/", None),
        ("deliveries_replay", "replay/", {"dry_run": False}),
    ],
)
def test_an_action_on_a_webhook_deleted_since_it_was_looked_up_is_a_404(
    api, school, monkeypatch, service, path, body
):
    # Given a webhook with a published event, which another request deletes right after this
    # one looked it up
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    event_publish(school=school, type="course.created", data={"course": {"id": "c-1"}})
    _deleted_before(monkeypatch, service, created["id"])

    # When this request acts on it
    response = api.post(f"/api/v1/subscriptions/{created['id']}/{path}", body, format="json")

    # Then the webhook is not found, and nothing of it is written back
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert not Subscription.objects.exists()
    assert not SigningSecret.objects.exists()
    assert not Delivery.objects.exists()


def test_delete_removes_the_webhook(api, school):
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()

    response = api.delete(f"/api/v1/subscriptions/{created['id']}/")

    assert response.status_code == 204
    assert not Subscription.objects.filter(pk=created["id"]).exists()


def test_rotate_secret_returns_the_new_secret_once(api, school):
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()

    rotated = api.post(f"/api/v1/subscriptions/{created['id']}/rotate-secret/").json()

    subscription = Subscription.objects.get(pk=created["id"])
    assert rotated["signing_secret"] != created["signing_secret"]
    assert rotated["signing_secret"] == signing_secret_current(subscription=subscription)
    expires = dt.datetime.fromisoformat(rotated["previous_secrets_expire_at"])
    assert dt.timedelta(hours=23) < expires - timezone.now() <= dt.timedelta(hours=24)
    previous = subscription.signing_secrets.exclude(expires_at=None).get()
    assert expires == previous.expires_at  # what was stored, not recomputed


def _unreadable(subscription, settings):
    """Make the webhook's current signing secret one no configured key can read."""
    from cryptography.fernet import Fernet

    from subscriptions.crypto import secret_encrypt

    keys = settings.WEBHOOKS_ENCRYPTION_KEYS
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # a key since lost
    newest = subscription.signing_secrets.filter(expires_at=None).get()
    newest.secret_encrypted = secret_encrypt("whsec_" + "A" * 43 + "=")
    newest.save(update_fields=["secret_encrypted"])
    settings.WEBHOOKS_ENCRYPTION_KEYS = keys


def test_rotating_an_unreadable_secret_says_no_previous_secret_keeps_signing(api, school, settings):
    # Given a webhook whose signing secret no configured key can read
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    _unreadable(Subscription.objects.get(pk=created["id"]), settings)

    # When its secret is rotated (the way out of a lost key)
    rotated = api.post(f"/api/v1/subscriptions/{created['id']}/rotate-secret/").json()

    # Then the answer says the previous secret stopped at once, as it did
    assert rotated["previous_secrets_expire_at"] is None
    subscription = Subscription.objects.get(pk=created["id"])
    assert list(subscription.signing_secrets.filter(expires_at__gt=timezone.now())) == []


def test_a_second_rotation_answers_the_expiry_of_the_secret_that_still_signs(api, school, settings):
    # Given a webhook rotated once, whose new secret then became unreadable
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    first = api.post(f"/api/v1/subscriptions/{created['id']}/rotate-secret/").json()
    subscription = Subscription.objects.get(pk=created["id"])
    _unreadable(subscription, settings)

    # When it is rotated again, later
    settings.WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS = 48 * 3600
    again = api.post(f"/api/v1/subscriptions/{created['id']}/rotate-secret/").json()

    # Then the previous secrets sign until the first secret's end: the unreadable one stopped
    assert again["previous_secrets_expire_at"] == first["previous_secrets_expire_at"]


def test_send_test_returns_the_receivers_answer(api, school, receiver):
    created = api.post(
        "/api/v1/subscriptions/",
        {"name": "Local", "url": receiver.url("/t"), "topics": ["*"]},
        format="json",
    ).json()
    receiver.script("/t", Reply(status=200, body=b"hello from the receiver"))

    response = api.post(
        f"/api/v1/subscriptions/{created['id']}/test/",
        {"event_type": "student.signed"},
        format="json",
    )

    body = response.json()
    [received] = receiver.received("/t")
    assert response.status_code == 200
    assert (body["succeeded"], body["response_status"]) == (True, 200)
    assert body["response_body"] == "hello from the receiver"
    assert body["trigger"] == "test"
    assert body["duration_ms"] >= 0
    assert Webhook(created["signing_secret"]).verify(received.body, received.headers)


def test_send_test_to_a_webhook_deleted_since_it_was_looked_up_is_a_404(
    api, school, monkeypatch, connects
):
    # Given a webhook that another request deletes right after Send Test looked it up
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    _deleted_before(monkeypatch, "delivery_test_send", created["id"])

    # When the test is sent
    response = api.post(
        f"/api/v1/subscriptions/{created['id']}/test/",
        {"event_type": "course.created"},
        format="json",
    )

    # Then the webhook is not found, and nothing is sent or written
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert connects == []
    assert not Delivery.objects.exists()
    assert not Event.objects.exists()


def test_send_test_with_an_unknown_type_is_a_400(api, school):
    created = api.post("/api/v1/subscriptions/", NEW, format="json").json()

    response = api.post(
        f"/api/v1/subscriptions/{created['id']}/test/", {"event_type": "nope.nope"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": {"event_type": ["Unknown event type 'nope.nope'."]}}


def test_recover_re_drives_failed_deliveries_since_a_time_and_counts_them(api, school):
    subscription = SubscriptionFactory(school=school, url="https://crm.example.org/")
    ids = []
    for _ in range(2):
        event = event_publish(school=school, type="course.created", data={"course": {"id": "c"}})
        ids += event_fan_out(event_id=event.id)
    Delivery.objects.filter(pk__in=ids).update(status=DeliveryStatus.FAILED, next_attempt_at=None)

    response = api.post(
        f"/api/v1/subscriptions/{subscription.pk}/recover/",
        {"since": (timezone.now() - dt.timedelta(hours=1)).isoformat()},
        format="json",
    )

    assert response.json() == {"count": 2}
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.PENDING}


def test_preview_renders_a_template_for_a_sample(api, school):
    created = api.post("/api/v1/subscriptions/", {**NEW, "content_type": "json"}, format="json")
    subscription_id = created.json()["id"]

    response = api.post(
        f"/api/v1/subscriptions/{subscription_id}/preview/",
        {"event_type": "course.created", "body_template": '{"t": {{ type|json }}}'},
        format="json",
    )

    assert response.json() == {"content_type": "json", "body": '{"t": "course.created"}'}


def test_send_test_is_rate_limited_per_key(api, school, receiver, settings):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"webhook-test": "2/minute", "body-preview": "60/minute"},
    }
    created = api.post(
        "/api/v1/subscriptions/",
        {"name": "Local", "url": receiver.url("/t"), "topics": ["*"]},
        format="json",
    ).json()
    url = f"/api/v1/subscriptions/{created['id']}/test/"

    codes = [
        api.post(url, {"event_type": "course.created"}, format="json").status_code for _ in range(3)
    ]

    assert codes == [200, 200, 429]
    assert len(receiver.received("/t")) == 2


@pytest.mark.parametrize(
    ("page_size", "status"),
    [
        ("0", 400),
        ("00", 400),
        ("-1", 400),
        ("abc", 400),
        ("\uff11", 400),
        ("1", 200),
        ("500", 200),
        ("9999999999", 200),
        ("9" * 5000, 200),
    ],
)
def test_a_page_size_that_is_not_a_whole_number_of_at_least_one_is_refused(api, page_size, status):
    response = api.get("/api/v1/subscriptions/", {"page_size": page_size})

    assert response.status_code == status
    if status == 400:
        assert response.json() == {"errors": {"page_size": ["Give a whole number of at least 1."]}}


@pytest.mark.parametrize("path", ["/api/v1/subscriptions/", "/api/v1/event-types/"])
@pytest.mark.parametrize(
    "number", ["3", "9999999999", "173762466897443965581926277840896", "9" * 5000]
)
def test_a_page_past_the_last_is_a_404_however_large_its_number(api, path, number):
    # Given a list with one page
    # When a page past it is asked for, with a number of any length
    response = api.get(path, {"page": number, "page_size": 200})

    # Then it is not found, as DRF answers any page past the last, not a 400 saying the
    # number is not a whole number of at least 1
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_a_filter_given_empty_or_not_a_boolean_is_refused(api):
    empty = api.get("/api/v1/deliveries/", {"subscription": ""})
    boolean = api.get("/api/v1/deliveries/", {"is_test": "null"})

    assert empty.json() == {
        "errors": {"subscription": ["Give a value, or leave the parameter out."]}
    }
    assert boolean.json() == {"errors": {"is_test": ["Give true or false."]}}


def test_pause_with_a_resume_time_then_resume_shows_in_the_webhook(api, school):
    subscription = SubscriptionFactory(school=school, url="https://crm.example.org/")
    base = f"/api/v1/subscriptions/{subscription.pk}/"
    until = (timezone.now() + dt.timedelta(hours=4)).replace(microsecond=0)

    paused = api.post(base + "pause/", {"resume_at": until.isoformat()}, format="json")

    assert paused.status_code == 200
    assert paused.json()["paused_at"] is not None
    assert dt.datetime.fromisoformat(paused.json()["resume_at"]) == until
    assert paused.json()["is_active"] is True
    assert api.get(base).json()["resume_at"] == paused.json()["resume_at"]

    resumed = api.post(base + "resume/")

    assert resumed.status_code == 200
    assert (resumed.json()["paused_at"], resumed.json()["resume_at"]) == (None, None)
    assert api.post(base + "resume/").status_code == 200  # idempotent


def test_pause_refuses_a_resume_time_that_is_past_or_not_a_time(api, school):
    subscription = SubscriptionFactory(school=school, url="https://crm.example.org/")
    base = f"/api/v1/subscriptions/{subscription.pk}/"
    past = (timezone.now() - dt.timedelta(minutes=5)).isoformat()

    responses = [
        api.post(base + "pause/", {"resume_at": past}, format="json"),
        api.post(base + "pause/", {"resume_at": "tomorrow"}, format="json"),
    ]

    assert [r.status_code for r in responses] == [400, 400]
    assert responses[0].json() == {
        "errors": {"resume_at": ["The time to resume must be in the future."]}
    }
    assert list(responses[1].json()["errors"]) == ["resume_at"]
    subscription.refresh_from_db()
    assert subscription.paused_at is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("basic_auth_password", 0),
        ("basic_auth_username", 42),
        ("name", 12.5),
        ("url", 1),
        ("body_template", False),
        ("custom_headers", {"X-A": 1}),
        ("custom_headers", {"X-A": True}),
        ("topics", [1]),
        ("secret_headers", [7]),
        ("basic_auth_enabled", "yes"),
        ("basic_auth_enabled", 1),
        ("sign_ed25519", "1"),
        ("is_active", "true"),
        ("is_active", 0),
        ("max_concurrency", "4"),
        ("max_concurrency", 4.0),
        ("max_concurrency", True),
        ("rate_limit_per_second", "10"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_refused_naming_its_field(api, school, field, value):
    # Given a webhook's settings with one value of another JSON type than the field's
    # When it is created
    response = api.post("/api/v1/subscriptions/", {**NEW, field: value}, format="json")

    # Then it is refused naming that field, not stored as its str() or its truthiness
    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == [field]
    assert Subscription.objects.count() == 0


@pytest.mark.parametrize("dry_run", ["yes", "1", 1, "true", "on"])
def test_a_replay_dry_run_that_is_not_a_json_boolean_is_refused(api, school, dry_run):
    subscription = SubscriptionFactory(school=school, topics=["course.*"])

    response = api.post(
        f"/api/v1/subscriptions/{subscription.pk}/replay/", {"dry_run": dry_run}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": {"dry_run": ["Must be a valid boolean."]}}
    assert Delivery.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("test/", {"event_type": 1}, "event_type"),
        ("preview/", {"event_type": "course.created", "body_template": 0}, "body_template"),
        ("replay/", {"event_types": [1]}, "event_types"),
    ],
)
def test_an_action_refuses_a_number_for_a_text_naming_its_field(api, school, path, body, field):
    subscription = SubscriptionFactory(school=school, topics=["course.*"])

    response = api.post(f"/api/v1/subscriptions/{subscription.pk}/{path}", body, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


def test_a_field_the_api_does_not_know_is_a_400_naming_it_not_ignored(api, school):
    webhook = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    url = f"/api/v1/subscriptions/{webhook['id']}/"

    typo = api.patch(url, {"max_concurrenccy": 3, "max_concurrency": "three"}, format="json")
    created = api.post("/api/v1/subscriptions/", {**NEW, "name": "ERP", "topic": ["*"]}, "json")

    assert typo.status_code == 400
    assert typo.json()["errors"] == {
        "max_concurrenccy": ["Unknown field."],
        "max_concurrency": ["A valid integer is required."],
    }
    assert created.status_code == 400
    assert created.json()["errors"] == {"topic": ["Unknown field."]}
    assert Subscription.objects.count() == 1


def test_a_webhook_read_from_the_api_can_be_sent_back_with_a_change(api, school):
    webhook = api.post("/api/v1/subscriptions/", NEW, format="json").json()
    url = f"/api/v1/subscriptions/{webhook['id']}/"
    read = api.get(url).json()

    saved = api.put(url, {**read, "name": "CRM v2", "basic_auth_password": "s3cret"}, "json")

    assert saved.status_code == 200, saved.json()
    assert saved.json()["name"] == "CRM v2"
