import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import tasks
from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import deliveries_prune, delivery_attempt, event_fan_out
from deliveries.services.redrive import PruneResult
from events.models import Event, ScheduledEvent, ScheduledEventStatus
from events.services import event_publish
from tests.deliveries.factories import delivery_create, event_create
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_pruning_deletes_old_final_deliveries_and_keeps_pending_and_recent_ones(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/p"))
    receiver.script("/p", default=Reply(status=200))
    ids = []
    for _ in range(4):
        event = event_publish(school=school, type="course.created", data={"course": {"id": "c"}})
        ids += event_fan_out(event_id=event.id)
    old_delivered, old_pending, recent, old_failed = ids
    delivery_attempt(delivery_id=old_delivered)
    delivery_attempt(delivery_id=recent)
    Delivery.objects.filter(pk=old_failed).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None
    )
    long_ago = timezone.now() - dt.timedelta(days=40)
    Delivery.objects.filter(pk__in=[old_delivered, old_pending, old_failed]).update(
        created_at=long_ago
    )
    Event.objects.filter(deliveries__pk__in=[old_delivered, old_pending, old_failed]).update(
        created_at=long_ago
    )

    result = deliveries_prune(older_than_days=30, batch_size=1)

    assert result.deliveries == 2
    assert result.finished
    assert set(Delivery.objects.values_list("pk", flat=True)) == {old_pending, recent}
    assert DeliveryAttempt.objects.filter(delivery_id=old_delivered).count() == 0
    assert Event.objects.count() == 2  # the events of the kept deliveries
    assert subscription.deliveries.count() == 2


def _long_ago(days=40):
    return timezone.now() - dt.timedelta(days=days)


def _old_events_without_deliveries(school, count):
    """``count`` fanned-out events of ``school`` older than the retention, made by PostgreSQL in
    one statement (a school without webhooks: no delivery at all)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events_event (id, school_id, type, data, occurred_at, created_at,
                                      fanned_out_at, is_test)
            SELECT gen_random_uuid(), %s, 'course.created',
                   jsonb_build_object('course', jsonb_build_object('id', 'c-' || g)), t, t, t, false
            FROM generate_series(1, %s) AS g, LATERAL (SELECT %s::timestamptz AS t) AS x
            """,
            [school.pk, count, _long_ago()],
        )


def test_pruning_more_old_events_than_one_statement_can_name(school):
    """Django's delete names every event and its relations' rows in one statement: past 65,535
    events PostgreSQL refuses it (psycopg: "number of parameters must be between 0 and 65535"),
    after the worker read all of them with their data, and every prune failed from then on."""
    _old_events_without_deliveries(school, 66_000)

    result = deliveries_prune(older_than_days=30)

    assert result == PruneResult(deliveries=0, events=66_000, finished=True)
    assert not Event.objects.exists()


def test_pruning_reads_no_body_nor_data_and_deletes_in_bounded_batches(school):
    """A batch names its rows by id: no delivery's body, attempt or event's data is loaded, and
    each statement deletes at most a batch."""
    subscription = SubscriptionFactory(school=school)
    for _ in range(5):
        delivery_create(subscription, created_at=_long_ago())
    Event.objects.update(created_at=_long_ago())
    _old_events_without_deliveries(school, 3)

    with CaptureQueriesContext(connection) as queries:
        result = deliveries_prune(older_than_days=30, batch_size=2)

    assert result == PruneResult(deliveries=5, events=8, finished=True)
    assert not Delivery.objects.exists()
    assert not DeliveryAttempt.objects.exists()
    assert not Event.objects.exists()
    statements = [query["sql"] for query in queries.captured_queries]
    assert not [sql for sql in statements if '"body"' in sql or '"data"' in sql]
    deletes = [sql for sql in statements if sql.startswith("DELETE")]
    # Per batch: the attempts and the deliveries, or the events; never more than 2 ids each.
    assert all(sql.count("::uuid") <= 2 for sql in deletes)
    assert len(deletes) == 3 * 2 + 4  # 3 batches of deliveries, 4 of events


def test_pruning_reaches_the_events_however_many_deliveries_remain(school):
    """The task stops before Celery's time limit; deliveries and events go in turns, so a first
    prune longer than that limit still deletes events in each slice, and the next slice goes
    on where this one stopped."""
    subscription = SubscriptionFactory(school=school)
    for _ in range(3):
        delivery_create(subscription, created_at=_long_ago())
    _old_events_without_deliveries(school, 3)
    Event.objects.update(created_at=_long_ago())

    first = deliveries_prune(older_than_days=30, batch_size=1, seconds=0)

    assert first == PruneResult(deliveries=1, events=1, finished=False)
    assert Delivery.objects.count() == 2
    rest = deliveries_prune(older_than_days=30, batch_size=1)
    assert rest.finished
    assert rest.deliveries == 2
    assert not Event.objects.exists()


def test_the_prune_task_sends_itself_again_while_more_remains(school, monkeypatch, settings):
    sent = []
    monkeypatch.setattr(tasks.prune, "apply_async", lambda *a, **k: sent.append(k))
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 45
    calls = []
    results = iter([PruneResult(5000, 5000, finished=False), PruneResult(10, 0, finished=True)])

    def prune(**kwargs):
        calls.append(kwargs)
        return next(results)

    monkeypatch.setattr(tasks.services, "deliveries_prune", prune)

    tasks.prune.apply(throw=True)
    assert len(sent) == 1
    tasks.prune.apply(throw=True)
    assert len(sent) == 1
    assert calls[0]["seconds"] <= 45 - 10  # it stops well before Celery interrupts it


def test_a_pruned_event_leaves_its_scheduled_event_without_it(school):
    """The scheduled event that became an event is kept, as ``SET_NULL`` says, when the event
    goes."""
    event = event_create(school, created_at=_long_ago())
    scheduled = ScheduledEvent.objects.create(
        school=school,
        type_id="course.created",
        data={},
        due_at=_long_ago(),
        status=ScheduledEventStatus.PUBLISHED,
        published_at=_long_ago(),
        event=event,
    )

    assert deliveries_prune(older_than_days=30).events == 1

    scheduled.refresh_from_db()
    assert scheduled.event_id is None
    assert scheduled.status == ScheduledEventStatus.PUBLISHED


def test_pruning_keeps_old_events_with_a_pending_delivery_or_awaiting_fan_out(school):
    subscription = SubscriptionFactory(school=school)
    pending = delivery_create(subscription, status=DeliveryStatus.PENDING, created_at=_long_ago())
    waiting = event_create(school)
    Event.objects.filter(pk=waiting.pk).update(fanned_out_at=None)
    Event.objects.update(created_at=_long_ago())

    assert deliveries_prune(older_than_days=30) == PruneResult(0, 0, finished=True)

    assert set(Event.objects.values_list("pk", flat=True)) == {pending.event_id, waiting.pk}
    assert DeliveryAttempt.objects.filter(delivery=pending).exists()


def test_an_event_replayed_while_it_is_pruned_keeps_its_delivery_and_its_scheduled_event(
    school, monkeypatch
):
    """A delivery made for the event after the batch read it (a replay) keeps the event, and
    the scheduled event that became it keeps its link."""
    from deliveries.services import redrive

    event = event_create(school, created_at=_long_ago())
    scheduled = ScheduledEvent.objects.create(
        school=school,
        type_id="course.created",
        data={},
        due_at=_long_ago(),
        status=ScheduledEventStatus.PUBLISHED,
        published_at=_long_ago(),
        event=event,
    )
    subscription = SubscriptionFactory(school=school)
    real = redrive.ScheduledEvent.objects

    class ReplayedMeanwhile:
        def filter(self, *args, **kwargs):
            if not Delivery.objects.exists():
                delivery_create(subscription, event=event)  # committed just after the read
            return real.filter(*args, **kwargs)

    monkeypatch.setattr(redrive.ScheduledEvent, "objects", ReplayedMeanwhile())

    assert deliveries_prune(older_than_days=30).events == 0

    scheduled.refresh_from_db()
    assert scheduled.event_id == event.pk
    assert Delivery.objects.filter(event=event).exists()
