"""Fan-out and the sweeper after a crash, a database error, or many broken webhooks."""

import datetime as dt

import pytest
from django.db import OperationalError
from django.utils import timezone

from deliveries.models import CircuitState, Delivery, DeliveryStatus, EndpointState
from deliveries.services import deliveries_sweep, events_fan_out_pending, redrive
from deliveries.services import fan_out as fan_out_module
from events.models import Event
from events.services import event_publish
from subscriptions.models import Subscription
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory


def _publish(school, type="course.created", course="c1"):
    return event_publish(school=school, type=type, data={"course": {"id": course}})


@pytest.mark.django_db(transaction=True)
def test_a_large_event_resumed_after_a_crash_is_fanned_out_when_fewer_webhooks_remain(
    catalog, settings
):
    """A worker died after the first piece of an event for many webhooks. Before the event is
    taken up again, a webhook was disabled (by hand or by the auto-disable), so the event now
    matches no more than a piece's worth: it must still be fanned out, once per webhook."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 3
    school = SchoolFactory()
    webhooks = sorted(
        (SubscriptionFactory(school=school, topics=["*"]) for _ in range(4)),
        key=lambda webhook: webhook.pk,
    )
    event = _publish(school)
    # The crash: the first piece (3 webhooks) was committed, nothing else.
    for webhook in webhooks[:3]:
        Delivery.objects.create(
            school=school,
            event=event,
            subscription=webhook,
            event_type=event.type_id,
            status=DeliveryStatus.DELIVERED,
        )
    Subscription.objects.filter(pk=webhooks[0].pk).update(is_active=False)
    other = _publish(school, course="c2")  # the school goes on publishing

    events_fan_out_pending()
    events_fan_out_pending()  # and once more, as the next task would

    assert Event.objects.get(pk=event.pk).fanned_out_at is not None
    pairs = list(Delivery.objects.filter(event=event).values_list("subscription_id", flat=True))
    assert sorted(pairs) == sorted(webhook.pk for webhook in webhooks[:4])
    assert Event.objects.get(pk=other.pk).fanned_out_at is not None


@pytest.mark.django_db
def test_open_circuits_with_nothing_to_probe_do_not_starve_one_with_a_backlog(school, monkeypatch):
    """Webhooks whose circuit opened long ago and whose deliveries have all ended (retry window
    over, not yet auto-disabled) keep a due ``probe_at``. They must not take every place in the
    sweeper's probe scan (``limit``, 2,000 in production, 2 here) forever, leaving a webhook
    that has deliveries waiting for its probe without one."""
    now = timezone.now()
    for minutes in (60, 50):  # opened first: their probe_at is the oldest
        idle = SubscriptionFactory(school=school, topics=["course.created"])
        EndpointState.objects.create(
            subscription=idle,
            circuit_state=CircuitState.OPEN,
            circuit_changed_at=now - dt.timedelta(days=2),
            probe_at=now - dt.timedelta(minutes=minutes),
        )
    broken = SubscriptionFactory(school=school, topics=["course.created"])
    event = _publish(school)
    Event.objects.filter(pk=event.pk).update(fanned_out_at=now)
    delivery = Delivery.objects.create(
        school=school,
        event=event,
        subscription=broken,
        event_type=event.type_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at=now - dt.timedelta(minutes=5),
    )
    EndpointState.objects.create(
        subscription=broken,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=now - dt.timedelta(minutes=30),
        probe_at=now - dt.timedelta(minutes=1),
    )

    enqueued: list = []
    monkeypatch.setattr(redrive, "deliveries_enqueue", lambda ids, **kw: enqueued.extend(ids))

    probes = [deliveries_sweep(limit=2).probes_sent for _ in range(3)]

    assert sum(probes) >= 1
    assert delivery.pk in enqueued


@pytest.mark.django_db(transaction=True)
def test_a_database_error_while_splitting_a_large_event_retries_the_task(
    catalog, settings, monkeypatch
):
    """The database became unreachable while an event for many webhooks was being written in
    pieces: the task must raise it (Celery retries it within a second or two, as the README
    and ``events_fan_out_waiting`` promise), not swallow it and leave the event to the
    sweeper with nothing pending."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 2
    school = SchoolFactory()
    for _ in range(4):
        SubscriptionFactory(school=school, topics=["*"])
    event = _publish(school)
    real = fan_out_module.deliveries_insert
    pieces: list[int] = []

    def insert(deliveries):
        if deliveries:
            pieces.append(len(deliveries))
            if len(pieces) == 2:
                raise OperationalError("server closed the connection unexpectedly")
        return real(deliveries)

    monkeypatch.setattr(fan_out_module, "deliveries_insert", insert)

    with pytest.raises(OperationalError):
        events_fan_out_pending()
    assert Event.objects.get(pk=event.pk).fanned_out_at is None
