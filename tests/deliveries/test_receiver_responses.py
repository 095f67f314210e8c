"""What receivers' answers do: 410 disables, Retry-After pushes back, failures add up to an
automatic disable with an e-mail, and failed deliveries can be recovered."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from deliveries.models import (
    AttemptTrigger,
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
)
from deliveries.services import (
    RetriggerOutcome,
    deliveries_attempt,
    deliveries_recover,
    deliveries_retrigger,
    delivery_attempt,
    delivery_retrigger,
    event_fan_out,
)
from events.services import event_publish
from schools.models import Membership
from subscriptions import services as subscription_services
from subscriptions.models import Subscription
from subscriptions.services import (
    subscription_disabled_notify,
    subscription_enable,
    subscription_update,
    subscriptions_auto_disable,
)
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def _delivery(subscription):
    event = event_publish(
        school=subscription.school, type="course.created", data={"course": {"id": "c1"}}
    )
    [delivery_id] = event_fan_out(event_id=event.id)
    return Delivery.objects.get(pk=delivery_id)


def test_a_410_answer_disables_the_webhook_with_the_reason(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/gone"))
    receiver.script("/gone", default=Reply(status=410, body=b"unsubscribed"))
    first, second = _delivery(subscription), _delivery(subscription)

    delivery_attempt(delivery_id=first.id)
    later = delivery_attempt(delivery_id=second.id)

    subscription.refresh_from_db()
    first.refresh_from_db()
    assert subscription.is_active is False
    assert subscription.disabled_reason.startswith("The receiver answered 410 Gone on ")
    assert first.status == DeliveryStatus.FAILED  # 410 is not retried
    assert later.error_kind == ErrorKind.DISABLED  # the next one is not even sent
    assert len(receiver.received("/gone")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_pushes_the_next_attempt_back(school, receiver, status):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/busy"))
    receiver.script("/busy", Reply(status=status, headers={"Retry-After": "2"}))
    delivery = _delivery(subscription)

    before = timezone.now()
    delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    # The shrunk schedule alone would retry 0.2 s after creation; the receiver asked for 2 s.
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at >= before + dt.timedelta(seconds=2)
    assert delivery.next_attempt_at <= timezone.now() + dt.timedelta(seconds=2)


def test_retry_after_as_a_date_is_clamped_to_the_retry_window(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/busy"))
    receiver.script(
        "/busy", Reply(status=503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    )
    delivery = _delivery(subscription)

    delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    window_end = delivery.created_at + dt.timedelta(seconds=3)  # the test run's 3 s window
    assert delivery.next_attempt_at == window_end


def test_retry_after_on_other_statuses_is_ignored(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/err"))
    receiver.script("/err", Reply(status=500, headers={"Retry-After": "3600"}))
    delivery = _delivery(subscription)

    delivery_attempt(delivery_id=delivery.id)
    finished = timezone.now()

    delivery.refresh_from_db()
    # The schedule's 0.2 s gap after the attempt, not the receiver's hour.
    gap = dt.timedelta(seconds=0.2)
    assert delivery.created_at + gap <= delivery.next_attempt_at <= finished + gap


def test_failures_start_a_streak_and_a_success_ends_it(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/flaky"))
    receiver.script("/flaky", Reply(status=500), Reply(status=500), Reply(status=200))

    delivery_attempt(delivery_id=_delivery(subscription).id)
    subscription.refresh_from_db()
    started = subscription.failing_since
    delivery_attempt(delivery_id=_delivery(subscription).id)
    subscription.refresh_from_db()
    still = subscription.failing_since
    delivery_attempt(delivery_id=_delivery(subscription).id)
    subscription.refresh_from_db()

    assert started is not None
    assert still == started  # the streak keeps its start
    assert subscription.failing_since is None


def test_a_webhook_failing_for_the_whole_period_is_disabled_and_its_admins_emailed(
    school, mailoutbox, django_user_model, django_capture_on_commit_callbacks
):
    admin = django_user_model.objects.create_user("ada", "ada@lycee.example.org", "pw")
    Membership.objects.create(user=admin, school=school)
    failing = SubscriptionFactory(
        school=school,
        name="CRM",
        url="https://crm.example.org/hooks",
        failing_since=timezone.now() - dt.timedelta(days=5, minutes=1),
    )
    recent = SubscriptionFactory(
        school=school, failing_since=timezone.now() - dt.timedelta(days=4, hours=23)
    )
    healthy = SubscriptionFactory(school=school)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        disabled = subscriptions_auto_disable()
        again = subscriptions_auto_disable()
    # once committed, the e-mail's task is queued (once); it sends the e-mail
    assert len(callbacks) == 1
    assert mailoutbox == []
    subscription_disabled_notify(subscription_id=failing.pk, reason=disabled[0].disabled_reason)

    assert [s.pk for s in disabled] == [failing.pk]
    assert again == []  # announced once
    failing.refresh_from_db()
    assert failing.is_active is False
    assert failing.disabled_reason.startswith("Disabled automatically: every delivery attempt")
    assert Subscription.objects.get(pk=recent.pk).is_active is True
    assert Subscription.objects.get(pk=healthy.pk).is_active is True
    [mail] = mailoutbox
    assert mail.to == ["ada@lycee.example.org"]
    assert mail.subject == f"Webhook désactivé\xa0: CRM ({school.name})"  # the school's language
    assert "https://crm.example.org/hooks" in mail.body
    assert failing.disabled_reason in mail.body


def test_re_enabling_and_recovering_re_sends_the_failed_deliveries_since_a_time(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/back"))
    old, recent_one, recent_two = (_delivery(subscription) for _ in range(3))
    Delivery.objects.filter(pk__in=[old.pk, recent_one.pk, recent_two.pk]).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None, attempts=5
    )
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    subscription.is_active = False
    subscription.save()

    subscription_enable(subscription=subscription)
    recovered = deliveries_recover(
        subscription=subscription, since=timezone.now() - dt.timedelta(days=1)
    )
    for delivery in (recent_one, recent_two):
        delivery_attempt(delivery_id=delivery.id)

    assert recovered == 2
    assert len(receiver.received("/back")) == 2
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert statuses == {
        old.pk: DeliveryStatus.FAILED,
        recent_one.pk: DeliveryStatus.DELIVERED,
        recent_two.pk: DeliveryStatus.DELIVERED,
    }
    attempt = DeliveryAttempt.objects.get(delivery=recent_one)
    assert (attempt.number, attempt.trigger) == (6, AttemptTrigger.RECOVERY)


def test_a_recovered_delivery_that_fails_again_is_failed_without_automatic_retries(
    school, receiver
):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/still-down"))
    receiver.script("/still-down", default=Reply(status=500))
    delivery = _delivery(subscription)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None, attempts=17
    )

    deliveries_recover(subscription=subscription, since=timezone.now() - dt.timedelta(days=1))
    delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempts) == (
        DeliveryStatus.FAILED,
        None,
        18,
    )
    assert delivery.next_trigger == AttemptTrigger.AUTOMATIC


def test_a_manual_retrigger_that_fails_does_not_start_automatic_retries(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/down"))
    receiver.script("/down", default=Reply(status=500))
    delivery = _delivery(subscription)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=None
    )

    assert delivery_retrigger(delivery=delivery) == RetriggerOutcome.QUEUED
    attempt = delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert attempt.trigger == AttemptTrigger.MANUAL
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None


@pytest.mark.parametrize("meanwhile", ["a success", "a pause"])
def test_a_webhook_that_recovered_or_paused_after_the_auto_disable_read_it_stays_on(
    school, monkeypatch, meanwhile
):
    """The automatic disable reads the webhooks failing for the whole period, then disables
    each; a success recorded (the streak ends) or a pause in between keeps it on."""
    failing = SubscriptionFactory(
        school=school, failing_since=timezone.now() - dt.timedelta(days=5, minutes=1)
    )
    real = subscription_services.subscription_disable

    def changed_meanwhile(**kwargs):
        row = Subscription.objects.filter(pk=kwargs["subscription"].pk)
        if meanwhile == "a success":
            row.update(failing_since=None)
        else:
            row.update(paused_at=timezone.now())
        return real(**kwargs)

    monkeypatch.setattr(subscription_services, "subscription_disable", changed_meanwhile)

    assert subscriptions_auto_disable() == []
    assert Subscription.objects.get(pk=failing.pk).is_active is True


def test_pending_deliveries_are_sent_now_too_and_once(school):
    subscription = SubscriptionFactory(school=school)
    pending, failed = _delivery(subscription), _delivery(subscription)
    Delivery.objects.filter(pk=failed.pk).update(status=DeliveryStatus.FAILED, next_attempt_at=None)

    first = deliveries_retrigger(delivery_ids=[pending.id, failed.id])
    again = delivery_retrigger(delivery=pending)

    assert (first.queued, first.skipped) == (2, 0)
    assert again == RetriggerOutcome.ALREADY_QUEUED


def test_users_without_an_email_or_inactive_are_not_emailed(school, mailoutbox):
    user_model = get_user_model()
    for username, email, active in [("no-mail", "", True), ("gone", "gone@example.org", False)]:
        user = user_model.objects.create_user(username, email, "pw", is_active=active)
        Membership.objects.create(user=user, school=school)
    SubscriptionFactory(school=school, failing_since=timezone.now() - dt.timedelta(days=6))

    subscriptions_auto_disable()

    assert mailoutbox == []


@pytest.mark.django_db(transaction=True)
def test_a_webhook_whose_url_is_corrected_starts_its_failure_streak_and_circuit_afresh(
    school, receiver, settings
):
    """Five days of failures against the old URL, the circuit open with a long cooldown: the
    school corrects the URL. Those failures say nothing of the new receiver: the webhook is
    not disabled for them, its circuit counts no failure from before and probes the new URL
    at once rather than after the old cooldown."""
    settings.WEBHOOKS_CIRCUIT_FAILURES = 5
    receiver.script("/new", default=Reply(status=200))
    webhook = SubscriptionFactory(
        school=school,
        url="http://127.0.0.1:9/old",
        failing_since=timezone.now() - dt.timedelta(days=5, minutes=1),
    )
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=40,
        opened_count=6,
        probe_at=timezone.now() + dt.timedelta(minutes=15),
    )
    waiting = _delivery(webhook)
    Delivery.objects.filter(pk=waiting.pk).update(enqueued_at=None)  # held by the circuit

    subscription_update(subscription=webhook, url=receiver.url("/new"))

    assert subscriptions_auto_disable() == []
    webhook.refresh_from_db()
    assert (webhook.is_active, webhook.failing_since) == (True, None)
    state = EndpointState.objects.get(pk=webhook.pk)
    assert (state.consecutive_failures, state.opened_count) == (0, 0)
    assert state.probe_at <= timezone.now()  # its probe is due now
    [probe] = deliveries_attempt(delivery_ids=[waiting.pk])
    assert probe.response_status == 200
    assert EndpointState.objects.get(pk=webhook.pk).circuit_state == CircuitState.CLOSED


@pytest.mark.django_db(transaction=True)
def test_a_webhook_turned_back_on_starts_its_circuit_afresh(school):
    webhook = SubscriptionFactory(school=school, is_active=False)
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.CLOSED,
        consecutive_failures=4,
        opened_count=3,
    )

    subscription_enable(subscription=webhook)

    state = EndpointState.objects.get(pk=webhook.pk)
    assert (state.circuit_state, state.consecutive_failures, state.opened_count) == (
        CircuitState.CLOSED,
        0,
        0,
    )


@pytest.mark.django_db(transaction=True)
def test_a_change_that_keeps_the_url_keeps_the_failure_streak(school):
    since = timezone.now() - dt.timedelta(days=2)
    webhook = SubscriptionFactory(school=school, failing_since=since)
    EndpointState.objects.create(subscription=webhook, consecutive_failures=4)

    subscription_update(subscription=webhook, name="Renamed")

    webhook.refresh_from_db()
    assert webhook.failing_since == since
    assert EndpointState.objects.get(pk=webhook.pk).consecutive_failures == 4
