"""Replay: a webhook's events of some types and/or a time range sent again as new deliveries."""

import datetime as dt
import json
import threading

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import (
    ReplayTooLarge,
    deliveries_prune,
    deliveries_replay,
    events_replay_count,
    replay_plan,
)
from deliveries.services.replay import _events_held
from events.models import Event
from tests.deliveries.factories import delivery_create, event_create
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _event(school, *, hours_ago, type="course.created", **fields):
    event = event_create(school, type=type, data={"course": {"id": f"c-{hours_ago}"}})
    at = NOW - dt.timedelta(hours=hours_ago)
    Event.objects.filter(pk=event.pk).update(created_at=at, occurred_at=at, **fields)
    event.refresh_from_db()
    return event


def _events_alike(event, count):
    """``count`` more events like ``event`` (same school, type, data and times), in one go."""
    Event.objects.bulk_create(
        Event(
            school=event.school,
            type=event.type,
            data=event.data,
            created_at=event.created_at,
            occurred_at=event.occurred_at,
            fanned_out_at=event.fanned_out_at,
        )
        for _ in range(count)
    )


@pytest.fixture
def webhook(school):
    return SubscriptionFactory(school=school, topics=["course.*"])


@pytest.fixture
def history(school, webhook):
    """Events of the school over five hours: delivered, failed, never sent to the webhook, of a
    type it does not receive, a Send Test sample, one awaiting fan-out; and another school's."""
    delivered = _event(school, hours_ago=1)
    delivery_create(webhook, event=delivered, status=DeliveryStatus.DELIVERED)
    failed = _event(school, hours_ago=2, type="course.updated")
    delivery_create(webhook, event=failed, status=DeliveryStatus.FAILED)
    never_sent = _event(school, hours_ago=3)
    old = _event(school, hours_ago=5)
    delivery_create(webhook, event=old, status=DeliveryStatus.DELIVERED)
    _event(school, hours_ago=1, type="student.signed")
    _event(school, hours_ago=1, is_test=True)
    _event(school, hours_ago=1, fanned_out_at=None)
    other = SchoolFactory()
    _event(other, hours_ago=1)
    return {"delivered": delivered, "failed": failed, "never_sent": never_sent, "old": old}


def test_a_replay_since_a_time_counts_then_resends_exactly_the_webhooks_events_since(
    webhook, history
):
    plan = replay_plan(subscription=webhook, since=NOW - dt.timedelta(hours=4))

    count = events_replay_count(plan=plan)
    result = deliveries_replay(plan=plan, actor=None)

    wanted = {history[name].pk for name in ("delivered", "failed", "never_sent")}
    assert count == 3
    assert result.count == 3
    assert result.queued == 3
    replayed = Delivery.objects.filter(pk__in=result.delivery_ids)
    assert {d.event_id for d in replayed} == wanted
    assert {d.status for d in replayed} == {DeliveryStatus.PENDING}
    assert {d.subscription_id for d in replayed} == {webhook.pk}
    # New deliveries, linked to their events; the earlier ones are untouched.
    assert Delivery.objects.filter(subscription=webhook).count() == 3 + 3
    numbers = {d.event_id: d.replay_number for d in replayed}
    assert numbers == dict.fromkeys(wanted, 1)
    body = json.loads(bytes(replayed.get(event=history["failed"]).body))
    assert body["id"] == str(history["failed"].pk)
    assert body["type"] == "course.updated"


def test_each_replay_numbers_its_deliveries_one_past_the_last(webhook, history):
    plan = replay_plan(subscription=webhook, event_types=["course.updated"])

    deliveries_replay(plan=plan, actor=None)
    deliveries_replay(plan=plan, actor=None)

    numbers = sorted(
        Delivery.objects.filter(event=history["failed"], subscription=webhook).values_list(
            "replay_number", flat=True
        )
    )
    assert numbers == [0, 1, 2]


def test_a_replay_by_type_and_range_takes_only_those(webhook, history):
    plan = replay_plan(
        subscription=webhook,
        event_types=["course.created"],
        since=NOW - dt.timedelta(hours=6),
        until=NOW - dt.timedelta(hours=2),
    )

    result = deliveries_replay(plan=plan, actor=None)

    replayed = Delivery.objects.filter(pk__in=result.delivery_ids)
    assert {d.event_id for d in replayed} == {history["never_sent"].pk, history["old"].pk}


def test_a_replay_past_the_cap_is_refused_whole(webhook, history, settings):
    settings.WEBHOOKS_REPLAY_MAX_EVENTS = 3
    plan = replay_plan(subscription=webhook)  # four events
    before = Delivery.objects.count()

    with pytest.raises(ReplayTooLarge) as count_refused:
        events_replay_count(plan=plan)
    with pytest.raises(ReplayTooLarge) as replay_refused:
        deliveries_replay(plan=plan, actor=None)

    assert "More than 3 events match" in count_refused.value.messages[0]
    assert "Narrow the range" in replay_refused.value.messages[0]
    assert Delivery.objects.count() == before
    assert not AuditEntry.objects.filter(action=AuditAction.DELIVERIES_REPLAYED).exists()


def test_bad_input_is_refused_with_every_problem_by_field(webhook):
    with pytest.raises(ValidationError) as refused:
        replay_plan(
            subscription=webhook,
            event_types=["course.created", "course.exploded", "student.signed"],
            since=NOW,
            until=NOW - dt.timedelta(hours=1),
        )

    assert refused.value.message_dict == {
        "event_types": [
            "Unknown event type: course.exploded.",
            "The webhook does not receive student.signed: replay only types it receives.",
        ],
        "until": ["“Until” must be after “since”."],
    }


def test_nothing_is_replayed_to_a_disabled_webhook(webhook, history):
    webhook.is_active = False
    webhook.save()
    plan = replay_plan(subscription=webhook)
    before = Delivery.objects.count()

    with pytest.raises(ValidationError) as refused:
        deliveries_replay(plan=plan, actor=None)

    assert refused.value.messages == [
        "The webhook is disabled: re-enable it, then replay its events."
    ]
    assert Delivery.objects.count() == before


def test_a_replay_is_audited_with_what_was_asked(webhook, history, school_admin):
    from audit.services import actor_user

    since = NOW - dt.timedelta(hours=4)
    deliveries_replay(
        plan=replay_plan(subscription=webhook, event_types=["course.created"], since=since),
        actor=actor_user(school_admin),
    )

    entry = AuditEntry.objects.get(action=AuditAction.DELIVERIES_REPLAYED)
    assert entry.actor == school_admin
    assert entry.object_id == str(webhook.pk)
    assert entry.changes == {
        "event_types": ["course.created"],
        "since": since.isoformat(),
        "until": None,
        "deliveries": 2,
    }


def test_a_replay_renders_the_body_with_the_webhooks_current_settings(webhook, history):
    webhook.body_template = '{"replayed": "{{ id }}"}'
    webhook.save()

    result = deliveries_replay(
        plan=replay_plan(subscription=webhook, event_types=["course.updated"]), actor=None
    )

    [delivery] = Delivery.objects.filter(pk__in=result.delivery_ids)
    assert json.loads(bytes(delivery.body)) == {"replayed": str(history["failed"].pk)}


# --- API ---------------------------------------------------------------------------------------


def test_the_api_counts_on_a_dry_run_then_replays(api, webhook, history):
    url = f"/api/v1/subscriptions/{webhook.pk}/replay/"
    since = (NOW - dt.timedelta(hours=4)).isoformat()
    before = Delivery.objects.count()

    counted = api.post(url, {"since": since, "dry_run": True}, format="json")
    after_count = Delivery.objects.count()
    done = api.post(url, {"since": since}, format="json")

    assert counted.status_code == 200
    assert counted.json() == {"count": 3, "queued": 0, "dry_run": True, "max_events": 10000}
    assert after_count == before
    assert done.status_code == 202
    assert done.json() == {"count": 3, "queued": 3, "dry_run": False, "max_events": 10000}
    assert Delivery.objects.filter(replay_number=1).count() == 3


def test_the_api_refuses_bad_input_and_the_cap_with_field_messages(api, webhook, history, settings):
    url = f"/api/v1/subscriptions/{webhook.pk}/replay/"

    bad = api.post(
        url,
        {
            "event_types": ["nope.nope"],
            "since": NOW.isoformat(),
            "until": (NOW - dt.timedelta(hours=1)).isoformat(),
        },
        format="json",
    )
    settings.WEBHOOKS_REPLAY_MAX_EVENTS = 1
    too_many = api.post(url, {"dry_run": True}, format="json")
    not_a_date = api.post(url, {"since": "yesterday"}, format="json")

    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"event_types", "until"}
    assert too_many.status_code == 400
    assert too_many.json()["errors"]["__all__"][0].startswith("More than 1 events match")
    assert not_a_date.status_code == 400
    assert set(not_a_date.json()["errors"]) == {"since"}
    assert Delivery.objects.filter(replay_number__gt=0).count() == 0


def test_the_api_cannot_replay_another_schools_webhook(api, history):
    other = SubscriptionFactory(school=SchoolFactory())

    response = api.post(f"/api/v1/subscriptions/{other.pk}/replay/", {}, format="json")

    assert response.status_code == 404


# --- Admin -------------------------------------------------------------------------------------


def test_the_admin_page_counts_first_then_replays_on_confirmation(
    client, school, school_admin, webhook, history
):
    client.force_login(school_admin)
    url = f"/admin/subscriptions/subscription/{webhook.pk}/replay/"
    since = timezone.localtime(NOW - dt.timedelta(hours=4), school.tzinfo)
    form = {"event_types": ["course.created"], "since": since.strftime("%Y-%m-%dT%H:%M")}

    page = client.get(url)
    counted = client.post(url, form)
    before = Delivery.objects.count()
    done = client.post(url, {**form, "confirm": "yes"}, follow=True)

    assert page.status_code == 200
    assert counted.context["count"] == 2
    assert "2 events will be sent again." in counted.content.decode()
    assert "Replay 2 events" in counted.content.decode()
    assert before == Delivery.objects.count() - 2
    assert [str(m) for m in done.context["messages"]] == [
        "2 events are being sent again to the webhook, each as a new delivery."
    ]
    change = client.get(f"/admin/subscriptions/subscription/{webhook.pk}/change/")
    assert "Replay events" in change.content.decode()


def test_the_admin_form_shows_every_problem_at_once(client, school_admin, webhook, settings):
    client.force_login(school_admin)
    url = f"/admin/subscriptions/subscription/{webhook.pk}/replay/"

    response = client.post(
        url,
        {"since": "2026-03-02T10:00", "until": "2026-03-01T10:00", "event_types": ["nope"]},
    )

    errors = response.context["form"].errors
    assert set(errors) == {"event_types", "until"}
    assert "Select a valid choice" in errors["event_types"][0]


@pytest.mark.parametrize(
    ("language", "cap"), [("en", "10,000"), ("fr", "10\xa0000"), ("de", "10.000")]
)
def test_the_admin_page_writes_the_cap_as_the_readers_language_writes_numbers(
    school_admin, webhook, language, cap
):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(school_admin)

    response = client.get(f"/admin/subscriptions/subscription/{webhook.pk}/replay/")

    assert f" {cap} " in response.content.decode()


def test_a_replay_past_the_cap_says_the_cap_as_the_readers_language_writes_it(
    client, school, school_admin, webhook, settings
):
    settings.WEBHOOKS_REPLAY_MAX_EVENTS = 1000
    _events_alike(_event(school, hours_ago=1), 1000)
    client = Client(HTTP_ACCEPT_LANGUAGE="de")
    client.force_login(school_admin)

    response = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/replay/", {"since": "", "until": ""}
    )

    [refusal] = response.context["form"].non_field_errors()
    assert refusal.startswith("Mehr als 1.000 Ereignisse")


def test_the_admin_page_of_another_schools_webhook_is_not_found(client, school_admin):
    client.force_login(school_admin)
    other = SubscriptionFactory(school=SchoolFactory())

    response = client.get(f"/admin/subscriptions/subscription/{other.pk}/replay/")

    assert response.status_code == 404
    assert Delivery.objects.count() == 0


def test_a_replay_sends_only_the_events_that_pass_the_webhooks_payload_filter(school, webhook):
    kept = _event(school, hours_ago=1)  # data {"course": {"id": "c-1"}}
    _event(school, hours_ago=2)  # c-2: the filter leaves it out
    webhook.payload_filter = {"field": "course.id", "op": "eq", "value": "c-1"}
    webhook.save(update_fields=["payload_filter"])
    plan = replay_plan(subscription=webhook, since=NOW - dt.timedelta(hours=3))

    result = deliveries_replay(plan=plan, actor=None)

    assert result.queued == 1
    assert list(
        Delivery.objects.filter(pk__in=result.delivery_ids).values_list("event_id", flat=True)
    ) == [kept.pk]


@pytest.mark.django_db(transaction=True)
def test_the_replay_number_migration_can_run_again_after_its_index_build_failed(
    catalog, monkeypatch
):
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.operations.special import RunPython

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    call_command("migrate", "deliveries", "0011", verbosity=0)
    build = RunPython.database_forwards

    def cancelled(self, app_label, schema_editor, from_state, to_state):
        if app_label == "deliveries" and self.code.__name__ == "forwards":
            raise RuntimeError("canceling statement due to lock timeout")  # after the column
        return build(self, app_label, schema_editor, from_state, to_state)

    monkeypatch.setattr(RunPython, "database_forwards", cancelled)
    with pytest.raises(RuntimeError):
        call_command("migrate", "deliveries", "0012", verbosity=0)
    monkeypatch.setattr(RunPython, "database_forwards", build)

    call_command("migrate", "deliveries", "0012", verbosity=0)  # run again: it completes

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'delivery_one_per_event_and_subscription'"
        )
        assert cursor.fetchone() == ("UNIQUE (event_id, subscription_id, replay_number)",)
    MigrationExecutor(connection).migrate(latest)


@pytest.mark.parametrize(
    ("language", "counted", "button"),
    [
        ("en", "1,200 events will be sent again.", "Replay 1,200 events"),
        ("fr", "1\xa0200 événements", "1\xa0200 événements"),
        ("de", "1.200 Ereignisse", "1.200 Ereignisse"),
    ],
)
def test_the_replay_count_is_written_as_the_readers_language_writes_numbers(
    school, school_admin, webhook, language, counted, button
):
    _events_alike(_event(school, hours_ago=1), 1199)
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(school_admin)

    page = client.post(
        f"/admin/subscriptions/subscription/{webhook.pk}/replay/", {"since": "", "until": ""}
    ).content.decode()

    status = page.split('class="replay-count" role="status">', 1)[1].split("</p>", 1)[0]
    assert counted in status
    confirm = page.split('name="confirm" value="yes">', 1)[1].split("</button>", 1)[0]
    assert button in confirm


@pytest.mark.django_db(transaction=True)
def test_a_replay_passes_over_an_event_the_pruner_deletes_meanwhile(school, webhook):
    """The hourly prune deletes old events left without deliveries. A replay that read such an
    event while the pruner was deleting it waits for the pruner, then replays the others: no
    delivery of a deleted event (which the database refused at the replay's commit)."""
    pruned = _event(school, hours_ago=30 * 24, fanned_out_at=NOW)
    kept = _event(school, hours_ago=30 * 24 - 1, fanned_out_at=NOW)
    plan = replay_plan(subscription=webhook, since=NOW - dt.timedelta(days=31))
    dsn = connection.settings_dict
    pruner = psycopg.connect(
        host=dsn["HOST"], port=dsn["PORT"] or 5432, user=dsn["USER"], dbname=dsn["NAME"]
    )
    pruner.execute("SELECT id FROM events_event WHERE id = %s FOR UPDATE", [pruned.pk])
    pruner.execute("DELETE FROM events_event WHERE id = %s", [pruned.pk])
    outcome = {}

    def replay():
        try:
            outcome["result"] = deliveries_replay(plan=plan, actor=None)
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    replaying = threading.Thread(target=replay)
    replaying.start()
    try:
        replaying.join(1.0)
    finally:
        pruner.commit()
        pruner.close()
    replaying.join(30)

    assert "error" not in outcome, outcome
    assert outcome["result"].count == 1
    assert list(Delivery.objects.values_list("event_id", flat=True)) == [kept.pk]


@pytest.mark.django_db(transaction=True)
def test_the_prune_passes_over_an_event_a_replay_holds(school, webhook):
    old = _event(school, hours_ago=30 * 24, fanned_out_at=NOW)
    pruned = {}

    def prune():
        try:
            pruned["result"] = deliveries_prune(older_than_days=7)
        finally:
            connection.close()

    with transaction.atomic():
        assert _events_held([old]) == [old]
        pruning = threading.Thread(target=prune)
        pruning.start()
        pruning.join(30)

    assert pruned["result"].events == 0
    assert Event.objects.filter(pk=old.pk).exists()
    assert deliveries_prune(older_than_days=7).events == 1


def test_a_replay_of_more_than_one_messages_worth_goes_behind_everyone_elses(
    webhook, history, own_queue, django_capture_on_commit_callbacks, settings
):
    """A replay is one webhook catching up, maybe on thousands of events: more than one
    message's worth goes to the lowest priority, so other schools' new events are not held up
    behind it; a replay of a few keeps the default."""
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2
    since = replay_plan(subscription=webhook, since=NOW - dt.timedelta(hours=4))
    one = replay_plan(subscription=webhook, event_types=["course.updated"])

    with django_capture_on_commit_callbacks(execute=True):
        many = deliveries_replay(plan=since, actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        few = deliveries_replay(plan=one, actor=None)

    assert len(many.delivery_ids) == 3
    assert own_queue.deliveries() == {
        0: [str(pk) for pk in few.delivery_ids],
        9: [str(pk) for pk in many.delivery_ids],
    }
