"""Send now ("retrigger"): any delivery in any state goes out at once; one waiting between
automatic attempts keeps its schedule if the manual attempt fails; a disabled webhook gets
nothing and the attempt number does not move."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from deliveries.models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import (
    RetriggerOutcome,
    deliveries_recover,
    deliveries_retrigger,
    delivery_attempt,
    delivery_retrigger,
    event_fan_out,
)
from deliveries.services.claim import deliveries_claim
from events.services import event_publish
from subscriptions.services import subscription_update
from tests.deliveries.factories import delivery_create
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def _retrying(subscription, due_in: dt.timedelta) -> Delivery:
    return delivery_create(
        subscription,
        status=DeliveryStatus.PENDING,
        attempts=2,
        next_attempt_at=timezone.now() + due_in,
        last_response_status=503,
        last_error_kind=ErrorKind.HTTP_STATUS,
    )


def test_a_retrying_delivery_sent_now_keeps_its_schedule_when_the_attempt_fails(school, receiver):
    receiver.script("/hook", default=Reply(status=500, body=b"still down"))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/hook"))
    delivery = _retrying(subscription, dt.timedelta(hours=2))
    scheduled = delivery.next_attempt_at

    outcome = delivery_retrigger(delivery=delivery)
    attempt = delivery_attempt(delivery_id=delivery.pk)

    assert outcome == RetriggerOutcome.QUEUED
    assert attempt is not None
    assert (attempt.number, attempt.trigger, attempt.response_status) == (3, "manual", 500)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.next_trigger) == (
        DeliveryStatus.PENDING,
        scheduled,
        AttemptTrigger.AUTOMATIC,
    )
    assert len(receiver.received("/hook")) == 1


def test_a_retrying_delivery_sent_now_is_delivered_when_the_receiver_is_back(school, receiver):
    receiver.script("/hook", default=Reply(status=200))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/hook"))
    delivery = _retrying(subscription, dt.timedelta(hours=2))

    delivery_retrigger(delivery=delivery)
    delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempts) == (
        DeliveryStatus.DELIVERED,
        None,
        3,
    )


def test_a_failed_delivery_sent_now_that_fails_again_stays_failed(school, receiver):
    receiver.script("/hook", default=Reply(status=500))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/hook"))
    delivery = delivery_create(subscription)

    delivery_retrigger(delivery=delivery)
    delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempts) == (
        DeliveryStatus.FAILED,
        None,
        2,
    )


def test_send_now_on_a_disabled_webhook_sends_nothing_and_keeps_the_attempt_number(
    school, receiver
):
    subscription = SubscriptionFactory(
        school=school, url=receiver.url("/hook"), is_active=False, disabled_reason="410"
    )
    delivery = delivery_create(subscription)

    outcome = delivery_retrigger(delivery=delivery)
    attempt = delivery_attempt(delivery_id=delivery.pk)

    assert outcome == RetriggerOutcome.WEBHOOK_DISABLED
    assert attempt is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert receiver.received() == []
    assert not AuditEntry.objects.exists()


def test_sending_now_twice_queues_it_once_and_the_audit_trail_says_who(school, school_admin):
    from audit.services import actor_user

    subscription = SubscriptionFactory(school=school, name="CRM")
    delivery = delivery_create(subscription)

    first = delivery_retrigger(delivery=delivery, actor=actor_user(school_admin))
    second = delivery_retrigger(delivery=delivery, actor=actor_user(school_admin))

    assert (first, second) == (RetriggerOutcome.QUEUED, RetriggerOutcome.ALREADY_QUEUED)
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor_id, entry.actor_label, entry.school_id) == (
        AuditAction.DELIVERY_RETRIGGERED,
        school_admin.pk,
        "ada",
        school.pk,
    )
    assert (entry.object_type, entry.object_id) == ("delivery", str(delivery.pk))
    assert entry.object_repr == "course.created → CRM"
    assert entry.changes == {"state": ["failed", "sending now"]}


def test_sending_now_a_delivery_whose_worker_died_still_logs_the_attempt_it_lost(school, receiver):
    receiver.script("/hook", default=Reply(status=200))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/hook"))
    delivery = _retrying(subscription, dt.timedelta(seconds=0))
    # A worker claimed attempt 3 and vanished: its lease ran out with no result written.
    expired = timezone.now() - dt.timedelta(seconds=1)
    Delivery.objects.filter(pk=delivery.pk).update(
        attempts=3, leased_until=expired, last_attempt_at=expired, lease_token=uuid.uuid4()
    )

    assert delivery_retrigger(delivery=delivery) == RetriggerOutcome.QUEUED
    delivery_attempt(delivery_id=delivery.pk)

    logged = list(
        DeliveryAttempt.objects.filter(delivery=delivery)
        .order_by("number")
        .values_list("number", "trigger", "error_kind")
    )
    assert logged[1:] == [
        (3, AttemptTrigger.AUTOMATIC, ErrorKind.INTERRUPTED),
        (4, AttemptTrigger.MANUAL, ErrorKind.NONE),
    ]


# A template an earlier release accepted and this one refuses (webhooks_check lists it): every
# delivery of its webhook fails at fan-out with nothing rendered, nothing sent.
LATIN1_TEMPLATE = '<?xml version="1.0" encoding="ISO-8859-1"?><e><t>{{ type }}</t></e>'
UTF8_TEMPLATE = '<?xml version="1.0" encoding="utf-8"?><e><t>{{ type }}</t></e>'


def _unrendered(school, receiver) -> Delivery:
    receiver.script("/xml", default=Reply(status=200))
    SubscriptionFactory(
        school=school,
        url=receiver.url("/xml"),
        content_type="xml",
        topics=["course.created"],
        body_template=LATIN1_TEMPLATE,
    )
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    delivery = Delivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.last_error_kind, bytes(delivery.body)) == (
        DeliveryStatus.FAILED,
        ErrorKind.TEMPLATE,
        b"",
    )
    return delivery


def test_a_delivery_whose_template_failed_is_rendered_when_sent_again_after_the_fix(
    school, receiver
):
    # The README's upgrade notes: correct the template, then send the failed deliveries again.
    delivery = _unrendered(school, receiver)
    subscription_update(subscription=delivery.subscription, body_template=UTF8_TEMPLATE)

    outcome = delivery_retrigger(delivery=delivery)
    attempt = delivery_attempt(delivery_id=delivery.pk)

    assert outcome == RetriggerOutcome.QUEUED
    assert (attempt.number, attempt.trigger, attempt.response_status) == (1, "manual", 200)
    expected = b'<?xml version="1.0" encoding="utf-8"?><e><t>course.created</t></e>'
    [received] = receiver.received("/xml")
    assert received.body == expected
    delivery.refresh_from_db()
    assert (delivery.status, bytes(delivery.body), delivery.last_error_kind) == (
        DeliveryStatus.DELIVERED,
        expected,
        ErrorKind.NONE,
    )


def test_a_delivery_whose_template_still_fails_is_not_sent_again_and_says_why(school, receiver):
    delivery = _unrendered(school, receiver)

    outcome = delivery_retrigger(delivery=delivery)

    assert outcome == RetriggerOutcome.TEMPLATE_ERROR
    assert delivery_attempt(delivery_id=delivery.pk) is None
    assert receiver.received("/xml") == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error_kind) == (
        DeliveryStatus.FAILED,
        0,
        ErrorKind.TEMPLATE,
    )
    assert 'encoding="ISO-8859-1"' in delivery.last_error
    assert not AuditEntry.objects.filter(action=AuditAction.DELIVERY_RETRIGGERED).exists()


def test_recovering_a_webhook_renders_the_deliveries_its_template_failed_on(school, receiver):
    delivery = _unrendered(school, receiver)
    subscription_update(subscription=delivery.subscription, body_template=UTF8_TEMPLATE)

    recovered = deliveries_recover(
        subscription=delivery.subscription, since=timezone.now() - dt.timedelta(hours=1)
    )
    delivery_attempt(delivery_id=delivery.pk)

    assert recovered == 1
    [received] = receiver.received("/xml")
    assert received.body == b'<?xml version="1.0" encoding="utf-8"?><e><t>course.created</t></e>'
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)


def test_recovering_leaves_failed_the_deliveries_its_template_still_fails_on(school, receiver):
    delivery = _unrendered(school, receiver)

    recovered = deliveries_recover(
        subscription=delivery.subscription, since=timezone.now() - dt.timedelta(hours=1)
    )

    assert recovered == 0
    assert delivery_attempt(delivery_id=delivery.pk) is None
    assert receiver.received("/xml") == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error_kind) == (
        DeliveryStatus.FAILED,
        0,
        ErrorKind.TEMPLATE,
    )


def test_the_api_says_a_delivery_whose_template_still_fails_was_not_sent(api, school, receiver):
    delivery = _unrendered(school, receiver)

    response = api.post(f"/api/v1/deliveries/{delivery.pk}/retrigger/")

    assert (response.status_code, response.json()) == (
        202,
        {"retriggered": False, "outcome": "template_error"},
    )
    assert receiver.received("/xml") == []


def test_a_selection_larger_than_the_concurrency_sends_the_first_at_once_and_the_rest_waiting(
    school,
):
    subscription = SubscriptionFactory(school=school, max_concurrency=2)
    failed = [delivery_create(subscription) for _ in range(3)]
    retrying = _retrying(subscription, dt.timedelta(hours=2))
    scheduled = retrying.next_attempt_at

    result = deliveries_retrigger(delivery_ids=[retrying.pk, *[d.pk for d in failed]])

    assert (result.queued, result.in_turn) == (4, 2)
    rows = {d.pk: d for d in Delivery.objects.filter(subscription=subscription)}
    # the two oldest go now, each with a message
    for delivery in failed[:2]:
        row = rows[delivery.pk]
        assert (row.status, row.next_trigger) == (DeliveryStatus.PENDING, AttemptTrigger.MANUAL)
        assert row.enqueued_at is not None
    # the others wait for a slot, due now and in their order; the retrying one keeps its schedule
    later = [rows[failed[2].pk], rows[retrying.pk]]
    for row in later:
        assert (row.status, row.next_trigger, row.enqueued_at) == (
            DeliveryStatus.PENDING,
            AttemptTrigger.RECOVERY,
            None,
        )
        assert row.next_attempt_at <= timezone.now()
    assert later[0].next_attempt_at < later[1].next_attempt_at
    assert (later[0].resume_attempt_at, later[1].resume_attempt_at) == (None, scheduled)


def test_a_retrying_delivery_sent_within_the_limits_keeps_its_schedule_when_it_fails(
    school, receiver
):
    receiver.script("/hook", default=Reply(status=500, body=b"still down"))
    subscription = SubscriptionFactory(school=school, url=receiver.url("/hook"), max_concurrency=1)
    first = delivery_create(subscription)
    retrying = _retrying(subscription, dt.timedelta(hours=2))
    scheduled = retrying.next_attempt_at
    deliveries_retrigger(delivery_ids=[first.pk, retrying.pk])  # the first goes at once
    delivery_attempt(delivery_id=first.pk)  # and holds the one slot until it is answered

    attempt = delivery_attempt(delivery_id=retrying.pk)

    assert attempt is not None
    assert (attempt.trigger, attempt.response_status) == (AttemptTrigger.RECOVERY, 500)
    retrying.refresh_from_db()
    assert (retrying.status, retrying.next_attempt_at, retrying.next_trigger) == (
        DeliveryStatus.PENDING,
        scheduled,
        AttemptTrigger.AUTOMATIC,
    )


def _in_flight(subscription) -> Delivery:
    return delivery_create(
        subscription,
        status=DeliveryStatus.PENDING,
        leased_until=timezone.now() + dt.timedelta(seconds=30),
    )


def test_a_webhook_with_its_slots_taken_gets_one_delivery_at_once_and_the_rest_in_turn(school):
    subscription = SubscriptionFactory(school=school, max_concurrency=2)
    _in_flight(subscription), _in_flight(subscription)
    failed = [delivery_create(subscription) for _ in range(3)]

    first = deliveries_retrigger(delivery_ids=[d.pk for d in failed])
    # A second selection while the first one's delivery has not been taken up yet
    more = [delivery_create(subscription) for _ in range(2)]
    second = deliveries_retrigger(delivery_ids=[d.pk for d in more])

    assert (first.queued, first.in_turn, second.queued, second.in_turn) == (3, 2, 2, 1)
    triggers = dict(
        Delivery.objects.filter(pk__in=[d.pk for d in failed + more]).values_list(
            "pk", "next_trigger"
        )
    )
    assert [triggers[d.pk] for d in failed + more] == [
        AttemptTrigger.MANUAL,
        AttemptTrigger.RECOVERY,
        AttemptTrigger.RECOVERY,
        AttemptTrigger.MANUAL,
        AttemptTrigger.RECOVERY,
    ]


def test_deliveries_sent_now_hold_their_slots_until_a_worker_takes_them_up(school):
    subscription = SubscriptionFactory(school=school, max_concurrency=2)
    failed = [delivery_create(subscription) for _ in range(2)]
    deliveries_retrigger(delivery_ids=[d.pk for d in failed])  # two free slots: both at once
    due = [delivery_create(subscription, status=DeliveryStatus.PENDING) for _ in range(2)]

    # Automatic deliveries claimed before a worker takes up the ones sent now
    automatic = deliveries_claim(delivery_ids=[str(d.pk) for d in due])
    sent_now = deliveries_claim(delivery_ids=[str(d.pk) for d in failed])
    then = deliveries_claim(delivery_ids=[str(d.pk) for d in due])

    assert automatic.claims == []
    assert sorted(automatic.waiting) == sorted(str(d.pk) for d in due)
    assert {claim.delivery.pk for claim in sent_now.claims} == {d.pk for d in failed}
    assert then.claims == []
    in_flight = Delivery.objects.filter(subscription=subscription, leased_until__gte=timezone.now())
    assert in_flight.count() == 2


def test_a_delivery_sent_now_takes_one_slot_not_two_when_claimed_with_automatic_ones(school):
    subscription = SubscriptionFactory(school=school, max_concurrency=2)
    failed = delivery_create(subscription)
    deliveries_retrigger(delivery_ids=[failed.pk])
    due = [delivery_create(subscription, status=DeliveryStatus.PENDING) for _ in range(2)]

    outcome = deliveries_claim(delivery_ids=[str(failed.pk), *(str(d.pk) for d in due)])

    assert len(outcome.claims) == 2  # the one sent now and one automatic: the two slots
    assert failed.pk in {claim.delivery.pk for claim in outcome.claims}
    assert len(outcome.waiting) == 1


def test_send_tests_in_a_selection_take_no_slot_of_their_webhook(school):
    subscription = SubscriptionFactory(school=school, max_concurrency=2)
    tests = [delivery_create(subscription, is_test=True) for _ in range(2)]
    failed = [delivery_create(subscription) for _ in range(2)]

    result = deliveries_retrigger(delivery_ids=[d.pk for d in tests + failed])

    assert (result.queued, result.in_turn) == (4, 0)
    assert set(
        Delivery.objects.filter(pk__in=[d.pk for d in failed]).values_list(
            "next_trigger", flat=True
        )
    ) == {AttemptTrigger.MANUAL}


def test_a_delivery_waiting_in_turn_sent_now_on_its_own_goes_at_once_and_keeps_its_schedule(
    school,
):
    subscription = SubscriptionFactory(school=school, max_concurrency=1)
    first = delivery_create(subscription)
    retrying = _retrying(subscription, dt.timedelta(hours=2))
    scheduled = retrying.next_attempt_at
    deliveries_retrigger(delivery_ids=[first.pk, retrying.pk])  # the retrying one waits in turn
    Delivery.objects.filter(pk=first.pk).update(status=DeliveryStatus.DELIVERED)

    outcome = delivery_retrigger(delivery=retrying)

    assert outcome == RetriggerOutcome.QUEUED
    retrying.refresh_from_db()
    assert (retrying.next_trigger, retrying.resume_attempt_at) == (
        AttemptTrigger.MANUAL,
        scheduled,
    )
    assert retrying.enqueued_at is not None  # with a message: it goes now


def test_a_selection_larger_than_one_message_is_sent_behind_everyone_elses(
    school, settings, own_queue, django_capture_on_commit_callbacks
):
    """Sending a large selection now is a bulk operation: its messages go to the lowest
    priority, so other schools' new events are not held up behind them; a small one keeps
    the default."""
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2
    failed = [delivery_create(SubscriptionFactory(school=school)) for _ in range(5)]

    with django_capture_on_commit_callbacks(execute=True):
        deliveries_retrigger(delivery_ids=[d.pk for d in failed[:2]])
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_retrigger(delivery_ids=[d.pk for d in failed[2:]])

    by_priority = own_queue.deliveries()
    assert set(by_priority) == {0, 9}
    assert sorted(by_priority[0]) == sorted(str(d.pk) for d in failed[:2])
    assert sorted(by_priority[9]) == sorted(str(d.pk) for d in failed[2:])


def test_send_tests_in_a_large_selection_keep_the_default_priority(
    school, settings, own_queue, django_capture_on_commit_callbacks
):
    """A Send Test is one a person waits for, and the sweeper never sends it again: in a large
    selection it still goes first."""
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2
    failed = [delivery_create(SubscriptionFactory(school=school)) for _ in range(3)]
    test = delivery_create(SubscriptionFactory(school=school), is_test=True)

    with django_capture_on_commit_callbacks(execute=True):
        deliveries_retrigger(delivery_ids=[test.pk, *[d.pk for d in failed]])

    by_priority = own_queue.deliveries()
    assert set(by_priority) == {0, 9}
    assert by_priority[0] == [str(test.pk)]
    assert sorted(by_priority[9]) == sorted(str(d.pk) for d in failed)
