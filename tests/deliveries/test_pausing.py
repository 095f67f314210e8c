"""Pausing a webhook and catching up after it (deliveries/services/pausing.py), with real
receivers on 127.0.0.1."""

import datetime as dt
import json

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from deliveries.models import CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.selectors import delivery_backlog, operations_state
from deliveries.services import claim as claim_module
from deliveries.services import (
    deliveries_attempt,
    deliveries_sweep,
    delivery_test_send,
    subscription_pause,
    subscription_resume,
)
from deliveries.services import fan_out as fan_out_module
from deliveries.services import pausing as pausing_module
from deliveries.services import record as record_module
from deliveries.services import redrive as redrive_module
from deliveries.services.claim import deliveries_claim
from deliveries.services.fan_out import deliveries_insert, delivery_build
from deliveries.services.pausing import catch_ups_drive, subscriptions_resume_due
from events.models import Event
from events.services import event_publish
from subscriptions.models import Subscription
from subscriptions.selectors import FAN_OUT_FIELDS
from subscriptions.services import subscription_disable, subscriptions_auto_disable
from tests.database import rows_clone, rows_read
from tests.deliveries.factories import deliveries_published
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def _course_ids(receiver, path="/hook"):
    return [json.loads(request.body)["data"]["course"]["id"] for request in receiver.received(path)]


def _paused_webhook(school, receiver, **fields):
    receiver.script("/hook", default=Reply(status=200))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"), **fields)
    assert subscription_pause(subscription=webhook, actor=None) is True
    return webhook


def test_a_paused_webhooks_events_become_deliveries_that_are_held_and_nothing_is_sent(
    school, receiver
):
    webhook = _paused_webhook(school, receiver)

    ids = deliveries_published(school, 3)
    deliveries_attempt(delivery_ids=ids)  # a message that came anyway sends nothing

    assert receiver.received("/hook") == []
    held = Delivery.objects.filter(pk__in=ids)
    assert set(held.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    assert set(held.values_list("enqueued_at", flat=True)) == {None}
    assert set(held.values_list("attempts", flat=True)) == {0}
    webhook.refresh_from_db()
    assert webhook.is_active is True
    assert webhook.paused_at is not None


def test_resuming_sends_the_held_deliveries_one_at_a_time_in_the_order_they_were_published(
    school, receiver
):
    webhook = _paused_webhook(school, receiver, max_concurrency=10)
    ids = deliveries_published(school, 6)

    result = subscription_resume(subscription=webhook, actor=None)

    assert (result.resumed, result.held) == (True, 6)
    assert webhook.catching_up_since is not None
    # A message for a later delivery cannot overtake the oldest one.
    assert deliveries_claim(delivery_ids=ids[3:]).claims == []
    for _ in range(6):
        deliveries_attempt(delivery_ids=list(reversed(ids)))  # one at a time, oldest first
    assert _course_ids(receiver) == [f"c{n}" for n in range(6)]
    assert catch_ups_drive() == 1  # nothing waits: the catch-up is over
    webhook.refresh_from_db()
    assert webhook.catching_up_since is None


def test_an_event_published_during_the_catch_up_goes_after_the_held_ones(school, receiver):
    webhook = _paused_webhook(school, receiver)
    held = deliveries_published(school, 2)
    subscription_resume(subscription=webhook, actor=None)

    later = deliveries_published(school, 1, start=2)
    deliveries_attempt(delivery_ids=later)
    assert receiver.received("/hook") == []  # the held ones go first
    for _ in range(3):
        deliveries_attempt(delivery_ids=held + later)

    assert _course_ids(receiver) == ["c0", "c1", "c2"]


def test_events_published_after_the_resume_do_not_keep_a_catch_up_going(school, receiver):
    webhook = _paused_webhook(school, receiver, max_concurrency=10)
    held = deliveries_published(school, 2)
    subscription_resume(subscription=webhook, actor=None)
    later = deliveries_published(school, 4, start=2)  # steady traffic meanwhile
    assert deliveries_claim(delivery_ids=later).claims == []  # they wait behind the held ones

    for _ in range(2):
        deliveries_attempt(delivery_ids=held)
    assert _course_ids(receiver) == ["c0", "c1"]
    first = deliveries_claim(delivery_ids=later).claims

    # The held ones are out: the catch-up is over though new deliveries wait, and they go side
    # by side again, up to the webhook's concurrency.
    webhook.refresh_from_db()
    assert webhook.catching_up_since is None
    assert len(first) + len(deliveries_claim(delivery_ids=later).claims) == 4


def test_a_delivery_fanned_out_while_the_resume_committed_still_goes_after_the_held_ones(
    school, receiver
):
    webhook = _paused_webhook(school, receiver)
    held = deliveries_published(school, 2)
    # A fan-out that read the webhook while it was paused and wrote after the resume.
    stale = Subscription.objects.only(*FAN_OUT_FIELDS).get(pk=webhook.pk)
    started = timezone.now()
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c2"}})
    subscription_resume(subscription=webhook, actor=None)
    racing = delivery_build(event=event, subscription=stale, now=started)
    deliveries_insert([racing])
    Event.objects.filter(pk=event.pk).update(fanned_out_at=timezone.now())
    assert racing.enqueued_at is None  # held, as the fan-out saw the webhook

    for _ in range(3):
        deliveries_attempt(delivery_ids=[str(racing.pk), *held])

    assert _course_ids(receiver) == ["c0", "c1", "c2"]


def test_a_failed_held_delivery_is_retried_once_the_next_ones_have_gone(school, receiver):
    receiver.script("/hook", default=Reply(status=200))
    webhook = _paused_webhook(school, receiver)
    ids = deliveries_published(school, 3)
    receiver.script("/hook", Reply(status=500), default=Reply(status=200))
    subscription_resume(subscription=webhook, actor=None)

    deliveries_attempt(delivery_ids=ids)  # c0 fails: its retry is scheduled
    first = Delivery.objects.get(pk=ids[0])
    assert first.status == DeliveryStatus.PENDING  # retrying
    assert first.next_attempt_at > timezone.now()
    Delivery.objects.filter(pk=ids[0]).update(next_attempt_at=timezone.now())  # its retry is due
    deliveries_attempt(delivery_ids=ids[:1])  # the held ones still go first
    assert _course_ids(receiver) == ["c0"]

    for _ in range(3):
        deliveries_attempt(delivery_ids=ids)

    assert _course_ids(receiver) == ["c0", "c1", "c2", "c0"]
    assert Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.DELIVERED).count() == 3
    assert Subscription.objects.get(pk=webhook.pk).catching_up_since is None


def test_a_held_deliverys_retry_window_starts_at_the_resume_not_at_its_creation(school, receiver):
    webhook = _paused_webhook(school, receiver)
    [delivery_id] = deliveries_published(school, 1)
    weekend_ago = timezone.now() - dt.timedelta(days=3)
    Subscription.objects.filter(pk=webhook.pk).update(paused_at=weekend_ago)
    Delivery.objects.filter(pk=delivery_id).update(created_at=weekend_ago + dt.timedelta(hours=1))
    receiver.script("/hook", Reply(status=503), default=Reply(status=200))

    subscription_resume(subscription=webhook, actor=None)
    deliveries_attempt(delivery_ids=[delivery_id])

    delivery = Delivery.objects.get(pk=delivery_id)
    assert delivery.retry_window_start_at > timezone.now() - dt.timedelta(minutes=1)
    assert delivery.status == DeliveryStatus.PENDING  # another attempt follows
    assert delivery.next_attempt_at < timezone.now() + dt.timedelta(minutes=1)


def test_a_held_delivery_that_waited_long_in_a_catch_up_still_gets_its_retries(school, receiver):
    webhook = _paused_webhook(school, receiver)
    [delivery_id] = deliveries_published(school, 1)
    subscription_resume(subscription=webhook, actor=None)
    # A catch-up of a large backlog under a tight rate limit: its turn comes 30 hours later.
    long_ago = timezone.now() - dt.timedelta(hours=30)
    Delivery.objects.filter(pk=delivery_id).update(retry_window_start_at=long_ago)
    receiver.script("/hook", Reply(status=503), default=Reply(status=200))

    deliveries_attempt(delivery_ids=[delivery_id])

    delivery = Delivery.objects.get(pk=delivery_id)
    assert delivery.retry_window_start_at > timezone.now() - dt.timedelta(minutes=1)
    assert delivery.status == DeliveryStatus.PENDING  # its window starts at this first attempt
    assert delivery.next_attempt_at is not None


def test_a_pause_only_moves_the_window_of_a_delivery_that_was_retrying_when_it_began(
    school, receiver
):
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"))
    [delivery_id] = deliveries_published(school, 1)
    created = timezone.now() - dt.timedelta(hours=5)
    Delivery.objects.filter(pk=delivery_id).update(created_at=created)
    subscription_pause(subscription=webhook, actor=None)
    paused_at = timezone.now() - dt.timedelta(hours=2)
    Subscription.objects.filter(pk=webhook.pk).update(paused_at=paused_at)

    subscription_resume(subscription=webhook, actor=None)

    start = Delivery.objects.get(pk=delivery_id).retry_window_start_at
    moved = start - created
    assert dt.timedelta(hours=2) <= moved < dt.timedelta(hours=2, minutes=1)


def test_the_sweeper_resumes_a_webhook_whose_resume_time_has_come(school, receiver):
    receiver.script("/hook", default=Reply(status=200))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/hook"))
    until = timezone.now() + dt.timedelta(hours=1)
    subscription_pause(subscription=webhook, until=until, actor=None)
    ids = deliveries_published(school, 2)
    deliveries_sweep()
    webhook.refresh_from_db()
    assert webhook.paused_at is not None  # not yet

    Subscription.objects.filter(pk=webhook.pk).update(resume_at=timezone.now())
    deliveries_sweep()

    webhook.refresh_from_db()
    assert (webhook.paused_at, webhook.resume_at) == (None, None)
    assert webhook.catching_up_since is not None
    for _ in range(2):
        deliveries_attempt(delivery_ids=ids)
    assert _course_ids(receiver) == ["c0", "c1"]
    entry = AuditEntry.objects.filter(action=AuditAction.WEBHOOK_RESUMED).get()
    assert entry.actor_label == "system"


def test_the_sweeper_restarts_a_stalled_catch_up_with_its_oldest_delivery(
    school, receiver, settings
):
    settings.WEBHOOKS_REDRIVE_AFTER_SECONDS = 0
    webhook = _paused_webhook(school, receiver)
    ids = deliveries_published(school, 3)
    subscription_resume(subscription=webhook, actor=None)
    Subscription.objects.filter(pk=webhook.pk).update(
        catching_up_since=timezone.now() - dt.timedelta(minutes=5)
    )

    assert catch_ups_drive() == 1

    deliveries_attempt(delivery_ids=[ids[0]])  # the message it sent
    assert _course_ids(receiver) == ["c0"]


def test_keeping_a_catch_up_going_reads_no_more_than_its_head_whatever_the_log_holds(
    school, receiver, settings
):
    settings.WEBHOOKS_REDRIVE_AFTER_SECONDS = 0
    webhook = _paused_webhook(school, receiver)
    ids = deliveries_published(school, 1)
    # 3,000 deliveries of the webhook sent an hour ago, before the pause.
    rows_clone(
        Delivery,
        ids[0],
        3000,
        {
            "id": "gen_random_uuid()",
            "replay_number": "n",
            "status": "'delivered'",
            "next_attempt_at": "NULL",
            "last_attempt_at": "now() - interval '1 hour'",
        },
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
    subscription_resume(subscription=webhook, actor=None)  # nothing sent it since

    with CaptureQueriesContext(connection) as queries:
        assert catch_ups_drive() == 1  # its head gets a message
    reads = [
        rows_read(query["sql"], [])
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT")
    ]

    assert max(reads) <= 2
    assert Subscription.objects.get(pk=webhook.pk).catching_up_since is not None  # still on
    deliveries_attempt(delivery_ids=ids)
    assert _course_ids(receiver) == ["c0"]


def test_a_catch_up_whose_circuit_is_open_is_left_to_its_probe(school, receiver, settings):
    settings.WEBHOOKS_REDRIVE_AFTER_SECONDS = 0
    webhook = _paused_webhook(school, receiver)
    deliveries_published(school, 2)
    subscription_resume(subscription=webhook, actor=None)
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=timezone.now(),
        probe_at=timezone.now() + dt.timedelta(minutes=1),
    )

    assert catch_ups_drive() == 0  # no message the claim would refuse, and not over

    EndpointState.objects.filter(pk=webhook.pk).update(circuit_state=CircuitState.CLOSED)
    assert catch_ups_drive() == 1  # closed again: its head gets its message
    assert Subscription.objects.get(pk=webhook.pk).catching_up_since is not None


def test_pausing_is_idempotent_and_audited_and_resume_of_a_running_webhook_does_nothing(school):
    webhook = SubscriptionFactory(school=school)

    assert subscription_resume(subscription=webhook, actor=None).resumed is False
    assert subscription_pause(subscription=webhook, actor=None) is True
    assert subscription_pause(subscription=webhook, actor=None) is False
    until = timezone.now() + dt.timedelta(days=1)
    assert subscription_pause(subscription=webhook, until=until, actor=None) is True
    assert webhook.resume_at == until
    assert subscription_resume(subscription=webhook, actor=None).resumed is True

    actions = list(
        AuditEntry.objects.filter(object_id=str(webhook.pk))
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == [
        AuditAction.WEBHOOK_PAUSED,
        AuditAction.WEBHOOK_PAUSED,
        AuditAction.WEBHOOK_RESUMED,
    ]


def test_a_resume_time_in_the_past_is_refused_and_changes_nothing(school):
    webhook = SubscriptionFactory(school=school)

    with pytest.raises(ValidationError) as raised:
        subscription_pause(
            subscription=webhook, until=timezone.now() - dt.timedelta(minutes=1), actor=None
        )

    assert raised.value.message_dict == {"resume_at": ["The time to resume must be in the future."]}
    webhook.refresh_from_db()
    assert webhook.paused_at is None
    assert not AuditEntry.objects.exists()


def test_send_test_still_goes_to_a_paused_webhook(school, receiver):
    webhook = _paused_webhook(school, receiver)

    attempt = delivery_test_send(subscription=webhook, event_type="course.created")

    assert attempt.response_status == 200
    assert len(receiver.received("/hook")) == 1


def test_a_paused_webhook_is_not_disabled_for_its_failure_streak(school, settings):
    webhook = SubscriptionFactory(
        school=school, failing_since=timezone.now() - dt.timedelta(days=10)
    )
    subscription_pause(subscription=webhook, actor=None)

    assert subscriptions_auto_disable() == []
    webhook.refresh_from_db()
    assert webhook.is_active is True
    subscription_resume(subscription=webhook, actor=None)
    assert webhook.failing_since is None  # the streak starts afresh


def test_held_deliveries_are_not_a_backlog_for_health_or_metrics(client, school, settings):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    webhook = SubscriptionFactory(school=school)
    subscription_pause(subscription=webhook, actor=None)
    ids = deliveries_published(school, 2)
    Delivery.objects.filter(pk__in=ids).update(
        next_attempt_at=timezone.now() - dt.timedelta(hours=3)
    )

    assert delivery_backlog(now=timezone.now())[0] == 0.0
    state = operations_state(now=timezone.now())
    assert state.due.count == 0
    assert state.webhooks == {"healthy": 0, "failing": 0, "paused": 1, "disabled": 0}
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_a_long_catch_up_is_not_a_backlog_for_health_either(client, school, settings):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    webhook = SubscriptionFactory(school=school)
    subscription_pause(subscription=webhook, actor=None)
    deliveries_published(school, 3)
    subscription_resume(subscription=webhook, actor=None)
    Delivery.objects.filter(subscription=webhook).update(
        next_attempt_at=timezone.now() - dt.timedelta(hours=1)
    )  # an hour into a slow catch-up

    assert delivery_backlog(now=timezone.now())[0] == 0.0
    assert client.get("/health/").status_code == 200


def test_a_catch_up_keeps_to_the_webhooks_rate_limit(school, receiver):
    webhook = _paused_webhook(school, receiver, rate_limit_per_second=1)
    ids = deliveries_published(school, 3)
    subscription_resume(subscription=webhook, actor=None)

    deliveries_attempt(delivery_ids=ids)
    outcome = deliveries_claim(delivery_ids=ids)  # the next one, within the same second

    assert _course_ids(receiver) == ["c0"]
    assert outcome.claims == []
    assert outcome.retry_at is not None  # it goes when the webhook has budget again


def test_a_catch_up_whose_circuit_is_open_is_failed_by_the_sweeper_once_the_webhook_is_disabled(
    school, receiver, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """A disabled webhook's deliveries are refused without a request, whatever its circuit: a
    catch-up left to a probe that never comes (no probes for a disabled webhook) must not hold
    them pending for ever."""
    settings.WEBHOOKS_REDRIVE_AFTER_SECONDS = 0
    webhook = _paused_webhook(school, receiver)
    ids = deliveries_published(school, 3)
    subscription_resume(subscription=webhook, actor=None)
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=timezone.now() - dt.timedelta(days=5),
        opened_count=12,
        probe_at=timezone.now() + dt.timedelta(minutes=15),
    )
    subscription_disable(subscription=webhook, reason="The receiver is gone.")
    messages: list[str] = []

    def enqueue(delivery_ids, countdown=None, bulk=False):
        messages.extend(str(pk) for pk in delivery_ids)

    for module in (claim_module, fan_out_module, pausing_module, record_module, redrive_module):
        monkeypatch.setattr(module, "deliveries_enqueue", enqueue)
    for _ in range(5):  # sweeps, and a worker for whatever they send
        with django_capture_on_commit_callbacks(execute=True):
            deliveries_sweep()
        while messages:
            sent, messages[:] = list(messages), []
            with django_capture_on_commit_callbacks(execute=True):
                deliveries_attempt(delivery_ids=sent)

    assert receiver.received("/hook") == []
    held = Delivery.objects.filter(pk__in=ids)
    assert set(held.values_list("status", flat=True)) == {DeliveryStatus.FAILED}
    assert set(held.values_list("last_error_kind", flat=True)) == {"disabled"}


def test_the_sweeper_does_not_resume_a_webhook_whose_pause_was_extended_after_it_read_it_due(
    school, receiver, monkeypatch
):
    """The sweeper reads up to 500 due webhooks, then resumes them one by one. A school that
    extends its pause meanwhile ("until 09:00" instead of 07:00) was told it is paused until
    09:00; the sweeper must not resume it anyway."""
    webhook = _paused_webhook(school, receiver)
    subscription_pause(
        subscription=webhook, until=timezone.now() + dt.timedelta(minutes=1), actor=None
    )
    deliveries_published(school, 2)
    Subscription.objects.filter(pk=webhook.pk).update(
        resume_at=timezone.now() - dt.timedelta(seconds=1)
    )  # its time has come
    extended = timezone.now() + dt.timedelta(hours=2)
    real_resume = pausing_module.subscription_resume

    def resume_after_the_school_extended_the_pause(*, subscription, **kwargs):
        # The school's request, between the sweeper's read of the due list and this resume.
        assert subscription_pause(
            subscription=Subscription.objects.get(pk=subscription.pk), until=extended, actor=None
        )
        return real_resume(subscription=subscription, **kwargs)

    monkeypatch.setattr(
        pausing_module, "subscription_resume", resume_after_the_school_extended_the_pause
    )

    subscriptions_resume_due()

    webhook.refresh_from_db()
    assert webhook.paused_at is not None  # still paused, as the school asked
    assert webhook.resume_at == extended


def test_the_sweeper_does_not_end_a_catch_up_whose_last_held_delivery_went_out_meanwhile(
    school, receiver, monkeypatch
):
    """``catch_ups_drive`` reads the idle catch-ups (nothing in flight), then each one's head.
    A worker that claims the last held delivery between the two must not make the sweeper end
    the catch-up: the webhook's concurrency would apply again while that delivery is in flight,
    and a newer event would go side by side with it."""
    webhook = _paused_webhook(school, receiver, max_concurrency=5)
    [held] = deliveries_published(school, 1)
    subscription_resume(subscription=webhook, actor=None)
    real_head = pausing_module.catch_up_head
    in_flight = []

    def head_after_a_worker_claimed_it(**kwargs):
        # A worker takes the resume's message for the head meanwhile.
        in_flight.extend(deliveries_claim(delivery_ids=[held]).claims)
        return real_head(**kwargs)

    monkeypatch.setattr(pausing_module, "catch_up_head", head_after_a_worker_claimed_it)

    catch_ups_drive()

    assert [str(claim.delivery.pk) for claim in in_flight] == [held]
    assert Subscription.objects.get(pk=webhook.pk).catching_up_since is not None
    # An event published now waits for the held delivery in flight (one at a time).
    later = deliveries_published(school, 1, start=1)
    assert deliveries_claim(delivery_ids=later).claims == []
