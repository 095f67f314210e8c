"""Fan-out in batches: publishing asks for it once, a task turns every waiting event into
deliveries, and a bad event or a second worker does not disturb the rest."""

import datetime as dt
import logging
import threading
import time

import psycopg
import pytest
from celery import current_app
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus, FanOutRequest
from deliveries.services import events_fan_out_pending
from deliveries.services import fan_out as fan_out_module
from deliveries.services.fan_out import (
    FAN_OUT_REQUEST_RESEND_SECONDS,
    FAN_OUT_TASK,
    events_fan_out_waiting,
    fan_out_request,
    fan_out_request_take,
)
from events.models import Event
from events.services import event_publish
from events.services import publish as publish_module
from subscriptions.models import Subscription
from tests.database import rows_clone, rows_held_elsewhere, rows_read
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory


def _publish(school, type="course.created", course="c1"):
    return event_publish(school=school, type=type, data={"course": {"id": course}})


def _piece_written(event, webhooks):
    """The deliveries of one piece of ``event``'s fan-out, as a worker that then died left them."""
    for webhook in webhooks:
        Delivery.objects.create(
            school=event.school,
            event=event,
            subscription=webhook,
            event_type=event.type_id,
            status=DeliveryStatus.DELIVERED,
        )


def _count_sends(monkeypatch) -> list[str]:
    """The names of the tasks sent from now on (sent for real, to the suite's own queue)."""
    sent: list[str] = []
    real = current_app.send_task

    def send_task(name, *args, **kwargs):
        sent.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(current_app, "send_task", send_task)
    return sent


def _deliveries_fail_to_build_for_course(monkeypatch, course: str) -> None:
    """Building a delivery raises for events about ``course``, as a rendering bug would."""
    real = fan_out_module.delivery_build

    def build(*, event, subscription, now, bodies=None):
        if event.data["course"]["id"] == course:
            raise RuntimeError("renderer exploded")
        return real(event=event, subscription=subscription, now=now, bodies=bodies)

    monkeypatch.setattr(fan_out_module, "delivery_build", build)


@pytest.mark.django_db
def test_one_task_fans_out_every_waiting_event_of_every_school(school):
    courses = SubscriptionFactory(school=school, topics=["course.*"])
    everything = SubscriptionFactory(school=school, topics=["*"])
    SubscriptionFactory(school=school, topics=["*"], is_active=False)
    elsewhere = SchoolFactory()
    theirs = SubscriptionFactory(school=elsewhere, topics=["course.created"])
    created = _publish(school)
    updated = _publish(school, type="course.updated")
    unmatched = _publish(elsewhere, type="course.deleted")
    foreign = _publish(elsewhere)

    assert events_fan_out_pending() == 4

    pairs = set(Delivery.objects.values_list("event_id", "subscription_id"))
    assert pairs == {
        (created.id, courses.id),
        (created.id, everything.id),
        (updated.id, courses.id),
        (updated.id, everything.id),
        (foreign.id, theirs.id),
    }
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()
    assert Event.objects.get(pk=unmatched.pk).fanned_out_at is not None
    assert events_fan_out_pending() == 0
    assert Delivery.objects.count() == 5


@pytest.mark.django_db
def test_a_full_batch_takes_the_oldest_and_asks_for_another_task(school):
    SubscriptionFactory(school=school, topics=["*"])
    events = [_publish(school, course=f"c{n}") for n in range(3)]

    assert events_fan_out_pending(limit=2) == 2

    waiting = list(Event.objects.filter(fanned_out_at__isnull=True).values_list("id", flat=True))
    assert waiting == [events[2].id]
    assert FanOutRequest.objects.get().requested_at_ms is not None
    assert events_fan_out_pending(limit=2) == 1
    assert FanOutRequest.objects.get().requested_at_ms is None
    assert Delivery.objects.count() == 3


@pytest.mark.django_db
def test_a_fan_out_inside_a_callers_transaction_leaves_its_planner_settings_as_they_were(school):
    SubscriptionFactory(school=school, topics=["*"])
    _publish(school)

    with transaction.atomic():
        assert events_fan_out_waiting() == 1
        with connection.cursor() as cursor:
            # The read of the outbox walks its index without bitmap scans; the caller's next
            # reads (the sweeper's, in the same transaction) plan as usual.
            cursor.execute("SHOW enable_bitmapscan")
            assert cursor.fetchone()[0] == "on"


@pytest.mark.django_db
def test_requests_are_coalesced_until_a_task_takes_them():
    assert fan_out_request() is True
    assert fan_out_request() is False
    assert fan_out_request() is False

    fan_out_request_take()
    assert fan_out_request() is True
    assert fan_out_request() is False
    assert fan_out_request(force=True) is True


@pytest.mark.django_db
def test_a_request_pending_too_long_is_sent_again():
    assert fan_out_request() is True
    stale = int((time.time() - FAN_OUT_REQUEST_RESEND_SECONDS - 1) * 1000)
    FanOutRequest.objects.filter(pk=1).update(requested_at_ms=stale)

    assert fan_out_request() is True
    assert FanOutRequest.objects.get().requested_at_ms > stale


@pytest.mark.django_db
def test_a_request_works_when_its_row_is_gone():
    FanOutRequest.objects.all().delete()

    assert fan_out_request() is True
    assert FanOutRequest.objects.get().requested_at_ms is not None


@pytest.mark.django_db
def test_publishing_asks_for_fan_out_after_commit_only(
    school, django_capture_on_commit_callbacks, monkeypatch
):
    FanOutRequest.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _publish(school)
    assert not FanOutRequest.objects.exists()

    assert len(callbacks) == 1

    sent = _count_sends(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _publish(school)
        _publish(school, course="c2")
        _publish(school, course="c3")
    assert len(callbacks) == 3
    assert sent == [FAN_OUT_TASK]  # one message for the three
    assert FanOutRequest.objects.get().requested_at_ms is not None


@pytest.mark.django_db
def test_one_event_that_cannot_be_fanned_out_does_not_hold_up_the_others(
    school, monkeypatch, caplog
):
    SubscriptionFactory(school=school, topics=["*"])
    good = _publish(school, course="good")
    bad = _publish(school, course="bad")
    also_good = _publish(school, course="also-good")
    _deliveries_fail_to_build_for_course(monkeypatch, "bad")
    with caplog.at_level(logging.ERROR, logger="deliveries.services.fan_out"):
        events_fan_out_pending()

    assert set(Delivery.objects.values_list("event_id", flat=True)) == {good.id, also_good.id}
    assert Event.objects.get(pk=bad.pk).fanned_out_at is None
    assert f"Fan-out of event {bad.id} failed" in caplog.text
    assert "renderer exploded" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_workers_fanning_out_at_once_share_the_events_without_doubles(school, caplog):
    subscriptions = [SubscriptionFactory(school=school, topics=["*"]) for _ in range(3)]
    for n in range(60):
        _publish(school, course=f"c{n}")
    start = threading.Barrier(3)
    counts: list[int] = []
    errors: list[BaseException] = []

    def work():
        start.wait()
        try:
            while (count := events_fan_out_pending(limit=7)) > 0:
                counts.append(count)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # Every event once: no batch fell back to one-by-one (a double would have made it fail).
    assert "Batch fan-out failed" not in caplog.text
    assert Delivery.objects.count() == 60 * len(subscriptions)
    assert Delivery.objects.values("event_id").distinct().count() == 60
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()
    assert sum(counts) > 0


@pytest.mark.django_db
def test_a_full_batch_of_events_that_fail_does_not_hold_up_newer_ones(school, monkeypatch):
    SubscriptionFactory(school=school, topics=["*"])
    bad = [_publish(school, course="bad") for _ in range(2)]
    good = _publish(school, course="good")
    _deliveries_fail_to_build_for_course(monkeypatch, "bad")

    assert events_fan_out_pending(limit=2) == 1

    assert list(Delivery.objects.values_list("event_id", flat=True)) == [good.id]
    waiting = set(Event.objects.filter(fanned_out_at__isnull=True).values_list("id", flat=True))
    assert waiting == {event.id for event in bad}


@pytest.mark.django_db
def test_a_batch_stops_at_its_size_in_bytes_and_asks_for_more(school, settings):
    settings.WEBHOOKS_FAN_OUT_MAX_BYTES = 1
    SubscriptionFactory(school=school, topics=["*"])
    for n in range(3):
        _publish(school, course=f"c{n}")
    fan_out_request_take()

    assert events_fan_out_pending() == 1  # its first body already passes the cap

    assert Event.objects.filter(fanned_out_at__isnull=True).count() == 2
    assert FanOutRequest.objects.get().requested_at_ms is not None
    assert events_fan_out_pending() == 1
    assert events_fan_out_pending() == 1
    assert Delivery.objects.count() == 3


@pytest.mark.django_db
def test_a_request_whose_message_could_not_be_sent_is_not_left_pending(monkeypatch, caplog):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(current_app, "send_task", broker_down)
    assert fan_out_request() is False
    assert "Could not enqueue fan-out" in caplog.text
    assert FanOutRequest.objects.get().requested_at_ms is None

    monkeypatch.undo()
    assert fan_out_request() is True


def test_pieces_start_small_then_take_the_configured_size():
    items = list(range(2350))
    sizes = [len(piece) for piece in fan_out_module._pieces(items, 1000)]
    assert sizes == [100, 1000, 1000, 250]
    assert [x for piece in fan_out_module._pieces(items, 1000) for x in piece] == items
    assert [len(piece) for piece in fan_out_module._pieces(items[:7], 3)] == [3, 3, 1]
    assert list(fan_out_module._pieces([], 1000)) == []


@pytest.mark.django_db(transaction=True)
def test_an_event_for_many_webhooks_is_committed_and_handed_off_a_piece_at_a_time(
    catalog, settings
):
    """Each piece is committed and handed to the workers before the next is built, so the
    first attempts start while the rest is being written; a piece written before a crash is
    not written again."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 3
    school = SchoolFactory()
    webhooks = [SubscriptionFactory(school=school, topics=["*"]) for _ in range(10)]
    event = _publish(school)
    # A crash after the first piece left its deliveries (and nothing else) behind.
    first = sorted(webhooks, key=lambda webhook: webhook.pk)[:3]
    _piece_written(event, first)
    handed_off: list[tuple[int, int, bool]] = []  # (piece size, committed by then, bulk)

    def hand_off(ids, *, bulk=False):
        committed = Delivery.objects.filter(event=event).count()
        handed_off.append((len(ids), committed, bulk))

    batch = fan_out_module._events_fan_out_batch(limit=10, passed_over=set(), hand_off=hand_off)

    assert batch.fanned_out == [event.id]
    assert handed_off == [(3, 6, True), (3, 9, True), (1, 10, True)]
    pairs = Delivery.objects.filter(event=event).values_list("subscription_id", flat=True)
    assert sorted(pairs) == sorted(webhook.pk for webhook in webhooks)
    assert Event.objects.get(pk=event.pk).fanned_out_at is not None


def _large_and_small(settings, *, webhooks: int):
    """A school with ``webhooks`` webhooks, more than a piece of 3 holds, and one with one;
    messages of 2 deliveries."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 3
    settings.WEBHOOKS_DELIVERY_BATCH_SIZE = 2
    large, small = SchoolFactory(), SchoolFactory()
    for _ in range(webhooks):
        SubscriptionFactory(school=large, topics=["*"])
    SubscriptionFactory(school=small, topics=["*"])
    return large, small


@pytest.mark.django_db(transaction=True)
def test_an_event_for_many_webhooks_sends_its_messages_behind_everyone_elses(
    catalog, settings, own_queue
):
    """One school's event for more webhooks than a piece holds is a bulk operation: its
    delivery messages go to the lowest priority, which a worker takes only once nothing else
    waits, while another school's event, fanned out in the same batch, keeps the default."""
    large, small = _large_and_small(settings, webhooks=7)
    announcement = _publish(large)
    news = _publish(small)

    assert events_fan_out_waiting() == 2

    by_priority = own_queue.deliveries()
    announced = {
        str(pk) for pk in Delivery.objects.filter(event=announcement).values_list("pk", flat=True)
    }
    newsworthy = [str(Delivery.objects.get(event=news).pk)]
    assert len(announced) == 7
    assert set(by_priority) == {0, 9}
    assert by_priority[0] == newsworthy
    assert sorted(by_priority[9]) == sorted(announced)


@pytest.mark.django_db(transaction=True)
def test_an_event_for_many_webhooks_fanned_out_on_its_own_still_goes_behind(
    catalog, settings, own_queue
):
    """Fanned out on its own (the legacy task, or after its batch failed as a whole), an
    event's deliveries are built in one transaction, not in pieces; for more webhooks than a
    piece holds, they are a bulk operation all the same."""
    large, small = _large_and_small(settings, webhooks=4)

    announced = fan_out_module.event_fan_out(event_id=_publish(large).id)
    newsworthy = fan_out_module.event_fan_out(event_id=_publish(small).id)

    by_priority = own_queue.deliveries()
    assert set(by_priority) == {0, 9}
    assert by_priority[0] == [str(pk) for pk in newsworthy]
    assert sorted(by_priority[9]) == sorted(str(pk) for pk in announced)


@pytest.mark.django_db(transaction=True)
def test_a_request_inside_a_callers_transaction_leaves_its_commit_durable():
    """The request's own commit does not wait for the disk (it only coalesces messages); a
    caller's transaction that asks for fan-out keeps waiting for its writes to be on disk."""
    with transaction.atomic():
        assert fan_out_request(force=True)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
    assert FanOutRequest.objects.get(pk=1).requested_at_ms is not None

    fan_out_request_take()
    assert fan_out_request()  # outside any transaction: its own, committed
    assert FanOutRequest.objects.get(pk=1).requested_at_ms is not None
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # SET LOCAL ended with its transaction


@pytest.mark.django_db(transaction=True)
def test_a_batch_passes_over_an_event_another_worker_holds_without_waiting_for_it(school):
    SubscriptionFactory(school=school, topics=["*"])
    events = [_publish(school, course=f"c{n}") for n in range(3)]

    with rows_held_elsewhere(Event.objects.filter(pk=events[1].pk)):
        fanned_out = events_fan_out_pending()  # waiting for the held row would fail it

    assert fanned_out == 2
    assert set(Delivery.objects.values_list("event_id", flat=True)) == {
        events[0].pk,
        events[2].pk,
    }
    assert Event.objects.get(pk=events[1].pk).fanned_out_at is None  # still the other's


@pytest.mark.django_db
def test_the_sweeper_fans_out_only_the_events_older_than_its_limit(school):
    SubscriptionFactory(school=school, topics=["*"])
    old, new = _publish(school, course="old"), _publish(school, course="new")
    Event.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))

    fanned_out = events_fan_out_waiting(created_before=timezone.now() - dt.timedelta(minutes=1))

    assert fanned_out == 1
    assert list(Delivery.objects.values_list("event_id", flat=True)) == [old.pk]
    assert Event.objects.get(pk=new.pk).fanned_out_at is None


@pytest.mark.django_db
def test_a_batch_reads_the_events_it_takes_not_the_whole_outbox(school):
    SubscriptionFactory(school=school, topics=["*"])
    first = _publish(school, course="c0")
    # 3,000 events fanned out long ago, and statistics of that time (as after the workers were
    # stopped for a while); then 3,000 more wait behind the first.
    rows_clone(
        Event,
        first.pk,
        3000,
        {
            "id": "gen_random_uuid()",
            "created_at": "r.created_at - interval '1 day' + n * interval '1 ms'",
            "fanned_out_at": "r.created_at",
        },
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_event")
    rows_clone(
        Event,
        first.pk,
        3000,
        {"id": "gen_random_uuid()", "created_at": "r.created_at + n * interval '1 ms'"},
    )

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        fan_out_module._events_waiting(
            limit=10, passed_over=set(), event_ids=None, created_before=None
        )
        transaction.set_rollback(True)
    # The read as the batch makes it, its settings included, run again under EXPLAIN.
    [setting] = [query["sql"] for query in queries.captured_queries if query["sql"][:3] == "SET"]
    [select] = [query["sql"] for query in queries.captured_queries if query["sql"][:6] == "SELECT"]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(setting)
        read = rows_read(select, [])
    fanned_out = events_fan_out_waiting(limit=10)

    assert read <= 10  # the batch, not 3,001
    assert fanned_out == 10
    waiting_before = Event.objects.filter(created_at__gte=first.created_at).order_by("created_at")
    oldest = list(waiting_before.values_list("pk", flat=True)[:10])
    done = Event.objects.filter(fanned_out_at__isnull=False, created_at__gte=first.created_at)
    assert sorted(done.values_list("pk", flat=True)) == sorted(oldest)  # the oldest ten


@pytest.mark.django_db
def test_deliveries_sent_from_the_fan_out_process_are_stored_waiting_and_written_once(
    school, django_capture_on_commit_callbacks
):
    from deliveries.services.claim import deliveries_claim

    SubscriptionFactory(school=school, topics=["*"], max_concurrency=2)
    with transaction.atomic():
        for number in range(5):
            _publish(school, course=f"c{number}")
    handed_off: list = []

    with django_capture_on_commit_callbacks(execute=True):
        fan_out_module._events_fan_out_batch(
            limit=10,
            passed_over=set(),
            hand_off=lambda ids, **_: handed_off.extend(ids),
            dispatched=4,
        )
    with CaptureQueriesContext(connection) as claim:
        outcome = deliveries_claim(delivery_ids=[str(pk) for pk in handed_off[:4]], waiting=True)

    deliveries = {d.pk: d for d in Delivery.objects.all()}
    # The four sent from this process wait without a message; the fifth has one.
    assert len(handed_off) == 5
    assert deliveries[handed_off[4]].enqueued_at is not None
    # Two go (the webhook's concurrency), two stay waiting: not written again.
    taken = {claim.delivery.pk for claim in outcome.claims}
    assert len(taken) == 2
    left = [deliveries[pk] for pk in handed_off[:4] if pk not in taken]
    assert [(d.enqueued_at, d.leased_until) for d in left] == [(None, None)] * 2
    assert not [q for q in claim.captured_queries if "SET enqueued_at" in q["sql"]]
    assert all(claim.waiting_behind for claim in outcome.claims)  # they take up the two


@pytest.mark.django_db
def test_a_batch_of_large_events_another_worker_is_splitting_is_passed_over_not_spun_on(
    catalog, settings
):
    """An event for many webhooks is fanned out in pieces by one worker at a time; another
    worker whose whole batch is such events moves past them instead of reading them again
    until the first is done."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 2
    school = SchoolFactory()
    for _ in range(3):
        SubscriptionFactory(school=school, topics=["*"])
    event = _publish(school)
    params = {k: v for k, v in connection.get_connection_params().items() if k != "context"}
    key = [fan_out_module._EVENT_LOCK_CLASS, str(event.pk)]
    with psycopg.connect(**params, autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
        # Bounds the test if the batch does spin: the other worker lets go after 5 s.
        timer = threading.Timer(
            5, lambda: other_worker.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
        )
        timer.start()
        started = time.monotonic()
        try:
            fanned_out = events_fan_out_waiting(limit=1)
        finally:
            elapsed = time.monotonic() - started
            timer.cancel()
            timer.join()

    assert (fanned_out, elapsed < 2) == (0, True)
    assert Event.objects.get(pk=event.pk).fanned_out_at is None  # the other worker's to finish


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
    _piece_written(event, webhooks[:3])
    Subscription.objects.filter(pk=webhooks[0].pk).update(is_active=False)
    other = _publish(school, course="c2")  # the school goes on publishing

    events_fan_out_pending()
    events_fan_out_pending()  # and once more, as the next task would

    assert Event.objects.get(pk=event.pk).fanned_out_at is not None
    pairs = list(Delivery.objects.filter(event=event).values_list("subscription_id", flat=True))
    assert sorted(pairs) == sorted(webhook.pk for webhook in webhooks[:4])
    assert Event.objects.get(pk=other.pk).fanned_out_at is not None


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


@pytest.mark.django_db(transaction=True)
def test_events_for_many_webhooks_count_against_the_batch_size_in_bytes(catalog, settings):
    """An event for more webhooks than a piece holds is built after the batch's transaction,
    but its deliveries count against the batch's bytes like any other's: a task takes no more
    of them than its budget, and leaves the rest to the next task."""
    settings.WEBHOOKS_FAN_OUT_CHUNK_SIZE = 3
    school = SchoolFactory()
    for _ in range(4):
        SubscriptionFactory(school=school, topics=["*"])
    events = [_publish(school, course=f"c{n}") for n in range(3)]
    settings.WEBHOOKS_FAN_OUT_MAX_BYTES = 1  # the first event's deliveries pass it

    batch = fan_out_module._events_fan_out_batch(limit=10, passed_over=set())

    assert batch.fanned_out == [events[0].id]
    assert batch.more is True
    assert Delivery.objects.filter(event=events[0]).count() == 4
    waiting = set(Event.objects.filter(fanned_out_at__isnull=True).values_list("id", flat=True))
    assert waiting == {events[1].id, events[2].id}


@pytest.mark.django_db(transaction=True)
def test_a_webhook_deleted_while_its_deliveries_are_written_is_not_an_error(
    school, monkeypatch, caplog
):
    """The batch's deliveries for it fail their foreign key at commit: the batch's events are
    fanned out again one by one, to the webhooks that exist then, and nothing is logged as an
    error (a busy platform fans out all the time: each webhook deleted made an ERROR with its
    traceback)."""
    from subscriptions.services import subscription_delete

    gone = SubscriptionFactory(school=school, topics=["*"])
    kept = SubscriptionFactory(school=school, topics=["*"])
    event = _publish(school)
    real = fan_out_module.deliveries_insert
    deleted = threading.Event()

    def delete_elsewhere():
        try:
            subscription_delete(subscription=Subscription.objects.get(pk=gone.pk))
        finally:
            connection.close()

    def insert(deliveries):
        real(deliveries)
        if not deleted.is_set():  # another process deletes it before this batch commits
            deleted.set()
            thread = threading.Thread(target=delete_elsewhere)
            thread.start()
            thread.join()

    monkeypatch.setattr(fan_out_module, "deliveries_insert", insert)

    with caplog.at_level(logging.INFO):
        assert events_fan_out_pending() == 1

    assert deleted.is_set()
    assert [record.message for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert "deleted meanwhile" in caplog.text
    assert list(Delivery.objects.values_list("subscription_id", flat=True)) == [kept.pk]
    assert Event.objects.get(pk=event.pk).fanned_out_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_fan_out_task_takes_the_events_published_meanwhile_without_a_message_each(
    school, monkeypatch
):
    """While its batches find events, the task marks the request pending again and reads on:
    what is published meanwhile needs no message of its own. It ends by taking the request
    and reading once more, so an event whose publisher saw the request still pending just
    before that is not left waiting."""
    SubscriptionFactory(school=school, topics=["*"])
    _publish(school, course="first")
    sent = _count_sends(monkeypatch)
    real_hold, real_take = fan_out_module.fan_out_request_hold, fan_out_module.fan_out_request_take
    published = []

    def hold_then_publish(**kwargs):
        made = real_hold(**kwargs)
        if not published:
            published.append(_publish(school, course="meanwhile"))
        return made

    def publish_then_take():
        if len(published) == 1:  # the task's last take: a publisher got in just before it
            published.append(_publish(school, course="just-before-the-end"))
        return real_take()

    monkeypatch.setattr(fan_out_module, "fan_out_request_hold", hold_then_publish)
    monkeypatch.setattr(fan_out_module, "fan_out_request_take", publish_then_take)

    assert events_fan_out_pending() == 3

    assert len(published) == 2
    assert FAN_OUT_TASK not in sent  # both publishers saw the request pending
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()
    assert Delivery.objects.count() == 3
    assert FanOutRequest.objects.get().requested_at_ms is None


@pytest.mark.django_db(transaction=True)
def test_a_fan_out_task_that_stalls_holds_the_publishers_messages_back_only_briefly(
    school, monkeypatch
):
    """A task's mark of the request holds the publishers' messages back for
    ``FAN_OUT_HOLD_SECONDS`` only: events published while it is stalled longer than that
    (a lock, a slow statement, a paused host) get a task of their own, not its wait."""
    SubscriptionFactory(school=school, topics=["*"])
    _publish(school, course="first")
    sent = _count_sends(monkeypatch)
    monkeypatch.setattr(fan_out_module, "FAN_OUT_HOLD_SECONDS", 0.1)
    real_hold = fan_out_module.fan_out_request_hold
    published = []

    def hold_then_stall(**kwargs):
        made = real_hold(**kwargs)
        if not published:
            published.append(_publish(school, course="held back"))  # within the hold
            time.sleep(0.3)  # stalled past it
            published.append(_publish(school, course="on its own"))
        return made

    monkeypatch.setattr(fan_out_module, "fan_out_request_hold", hold_then_stall)

    assert events_fan_out_pending() == 3  # the stalled task still reads both, in the end

    assert sent.count(FAN_OUT_TASK) == 1  # the second publisher's, after the hold ran out


def _promise_set(milliseconds: float) -> None:
    """A promise with this many milliseconds left by the database's clock (negative: one
    that has ended)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO deliveries_fanoutrequest (id, read_after_ms) VALUES (1, "
            "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + %s) "
            "ON CONFLICT (id) DO UPDATE SET read_after_ms = excluded.read_after_ms",
            [milliseconds],
        )


def _statements_from_insert(queries) -> list[str]:
    """The statements from the event's insert on (before it, a process's first publish reads
    the event type and the database's clock once)."""
    statements = [query["sql"] for query in queries.captured_queries]
    first = next(n for n, sql in enumerate(statements) if sql.startswith("INSERT INTO events_"))
    return statements[first:]


def _statements_of_publish(school, course) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        _publish(school, course=course)
    return _statements_from_insert(queries)


@pytest.fixture
def long_promises(monkeypatch):
    """Promises of a second, which any publish in a test keeps, whatever the host's load."""
    monkeypatch.setattr(fan_out_module, "FAN_OUT_PROMISE_SECONDS", 1.0)


class _PublisherHeldOpen:
    """A publish in a transaction of its own, in another thread: its insert reads the promise
    now, its commit waits for ``commit()``."""

    def __init__(self, school, course: str) -> None:
        self.statements: list[str] = []
        self.counted_on_a_promise = False
        self._inserted = threading.Event()
        self._commit = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(school, course))
        self._thread.start()
        assert self._inserted.wait(10)

    def _run(self, school, course: str) -> None:
        try:
            with CaptureQueriesContext(connection) as queries, transaction.atomic():
                _publish(school, course=course)
                self.counted_on_a_promise = publish_module._promise.until > time.monotonic()
                self._inserted.set()
                self._commit.wait(10)
            self.statements = [sql for sql in _statements_from_insert(queries) if sql != "COMMIT"]
        finally:
            connection.close()

    def commit(self) -> None:
        self._commit.set()
        self._thread.join(10)


def _commits_after_the_next_read(monkeypatch, publisher: _PublisherHeldOpen, *, read) -> None:
    """From now on the fan-out's reads are ``read``; ``publisher`` commits right after the
    next one, which so cannot have seen its event."""

    def read_then_the_publish_commits(**kwargs):
        count, more = read(**kwargs)
        if publisher._thread.is_alive():
            publisher.commit()
        return count, more

    monkeypatch.setattr(fan_out_module, "_events_fan_out_waiting", read_then_the_publish_commits)


@pytest.mark.django_db(transaction=True)
def test_a_publish_within_a_promise_asks_for_nothing_after_its_commit(
    school, monkeypatch, long_promises
):
    """A task reading on promises to read again: a publish that reads the promise in its own
    insert and commits within its length sends no statement after the commit."""
    _publish(school, course="before")  # the request's row
    fan_out_request_take()
    sent = _count_sends(monkeypatch)
    fan_out_module.fan_out_request_hold()

    statements = _statements_of_publish(school, "covered")

    assert len(statements) == 1  # the insert alone
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_a_publish_outside_a_promise_asks_for_fan_out(school, monkeypatch):
    fan_out_request_take()
    sent = _count_sends(monkeypatch)
    promise_ms = fan_out_module.FAN_OUT_PROMISE_SECONDS * 1000
    # Run out; running out as the insert reads it; more left than a promise lasts (the
    # database's clock went back): none counts.
    for left in (-5, 0, promise_ms + 60_000):
        fan_out_request_take()
        _promise_set(left)

        statements = _statements_of_publish(school, f"late {left}")

        assert len(statements) >= 2  # the insert, then the request after its commit
        assert FanOutRequest.objects.get().requested_at_ms is not None
    assert sent == [FAN_OUT_TASK] * 3


@pytest.mark.django_db(transaction=True)
def test_a_take_ends_the_promise_for_the_publishes_after_it(school, monkeypatch, long_promises):
    """What the take owes is a read after the publishes that read the promise before it: a
    later publish must not count on it, whatever the database's clock says is left."""
    _publish(school, course="before")
    fan_out_module.fan_out_request_hold()
    sent = _count_sends(monkeypatch)

    first = fan_out_request_take()
    assert first.until > time.monotonic()
    statements = _statements_of_publish(school, "after the take")

    assert len(statements) >= 2
    assert sent == [FAN_OUT_TASK]
    # Its debt stays for the next take until the read is made, then nothing is owed.
    fan_out_module.fan_out_debt_paid(first)
    assert fan_out_request_take().until == 0.0


@pytest.mark.django_db(transaction=True)
def test_a_publish_that_commits_after_the_promise_has_ended_asks_for_fan_out(school, monkeypatch):
    monkeypatch.setattr(fan_out_module, "FAN_OUT_PROMISE_SECONDS", 0.05)
    _publish(school, course="before")
    fan_out_request_take()
    sent = _count_sends(monkeypatch)
    fan_out_module.fan_out_request_hold()

    publisher = _PublisherHeldOpen(school, "slow")
    time.sleep(0.1)  # its transaction outlasts the promise
    publisher.commit()

    assert publisher.counted_on_a_promise  # when its insert read it
    assert len(publisher.statements) >= 2
    assert sent == [FAN_OUT_TASK]


@pytest.mark.django_db(transaction=True)
def test_a_publish_through_the_api_reads_the_promise_too(school, monkeypatch, long_promises):
    """The API's publish names the school by its slug, in another form of the insert."""
    from events.services import event_publish_or_get

    _publish(school, course="before")
    fan_out_request_take()
    sent = _count_sends(monkeypatch)
    fan_out_module.fan_out_request_hold()

    with CaptureQueriesContext(connection) as queries:
        event, created = event_publish_or_get(
            school=school,
            type="course.created",
            data={"course": {"id": "by slug"}},
            school_slug=school.slug,
        )

    assert created
    assert Event.objects.filter(pk=event.pk, school=school).exists()
    assert len(_statements_from_insert(queries)) == 1
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_a_task_reads_again_after_its_last_take_for_the_publishes_counting_on_its_promise(
    school, monkeypatch, long_promises
):
    """A publish read the promise before the task's last take and commits after the read
    that followed it: the task must still read its event before it ends."""
    monkeypatch.setattr(fan_out_module, "FAN_OUT_PROMISE_EVENTS", 1)
    SubscriptionFactory(school=school, topics=["*"])
    _publish(school, course="first")
    sent = _count_sends(monkeypatch)
    real_hold, real_take = fan_out_module.fan_out_request_hold, fan_out_module.fan_out_request_take
    real_read = fan_out_module._events_fan_out_waiting
    publishers: list[_PublisherHeldOpen] = []
    takes: list[float] = []

    def hold_then_a_publish_reads_the_promise(**kwargs):
        real_hold(**kwargs)
        if not publishers:
            publishers.append(_PublisherHeldOpen(school, "counting on the promise"))

    def take(*args, **kwargs):
        takes.append(real_take())
        return takes[-1]

    def read_then_the_publish_commits(**kwargs):
        count, more = real_read(**kwargs)
        if len(takes) == 2 and publishers[0]._thread.is_alive():
            publishers[0].commit()  # after the read that followed the task's last take
        return count, more

    monkeypatch.setattr(
        fan_out_module, "fan_out_request_hold", hold_then_a_publish_reads_the_promise
    )
    monkeypatch.setattr(fan_out_module, "fan_out_request_take", take)
    monkeypatch.setattr(fan_out_module, "_events_fan_out_waiting", read_then_the_publish_commits)

    assert events_fan_out_pending() == 2

    assert len(publishers[0].statements) == 1  # its insert alone: it counted on the promise
    assert FAN_OUT_TASK not in sent
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()
    assert Delivery.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_task_ending_on_a_full_batch_leaves_its_promise_to_the_next(
    school, monkeypatch, long_promises
):
    """A task that reads on, then finds a full batch, asks for another task and ends: the
    publishes counting on its promise are the next task's to read."""
    monkeypatch.setattr(fan_out_module, "FAN_OUT_PROMISE_EVENTS", 1)
    SubscriptionFactory(school=school, topics=["*"])
    _publish(school, course="first")
    sent = _count_sends(monkeypatch)
    real_hold = fan_out_module.fan_out_request_hold
    publishers: list[_PublisherHeldOpen] = []

    def hold_then_publish(**kwargs):
        real_hold(**kwargs)
        if not publishers:  # enough for a full batch, and one more that is slow to commit
            for n in range(2):
                assert len(_statements_of_publish(school, f"c{n}")) == 1
            publishers.append(_PublisherHeldOpen(school, "late"))

    monkeypatch.setattr(fan_out_module, "fan_out_request_hold", hold_then_publish)

    assert events_fan_out_pending(limit=2) == 3  # the first, then a full batch: it asks for more
    assert sent.count(FAN_OUT_TASK) == 1

    _commits_after_the_next_read(
        monkeypatch, publishers[0], read=fan_out_module._events_fan_out_waiting
    )

    assert events_fan_out_pending(limit=2) == 1  # it owed a read, so it read again

    assert len(publishers[0].statements) == 1
    assert sent.count(FAN_OUT_TASK) == 1
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_task_promises_only_while_events_come_fast(school, monkeypatch):
    """A batch of one event promises nothing (the task would then read again and again for
    it); one of FAN_OUT_PROMISE_EVENTS events does."""
    SubscriptionFactory(school=school, topics=["*"])
    real_hold = fan_out_module.fan_out_request_hold
    promised: list[bool] = []

    def hold(**kwargs):
        promised.append(kwargs["promise"])
        real_hold(**kwargs)

    monkeypatch.setattr(fan_out_module, "fan_out_request_hold", hold)
    _publish(school, course="alone")
    assert events_fan_out_pending() == 1
    for n in range(fan_out_module.FAN_OUT_PROMISE_EVENTS):
        _publish(school, course=f"c{n}")
    assert events_fan_out_pending() == fan_out_module.FAN_OUT_PROMISE_EVENTS

    assert promised == [False, True]
    assert FanOutRequest.objects.get().read_after_ms is None  # its last take cleared it


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["full batch", "database error"])
def test_a_task_that_ends_after_its_take_leaves_its_debt_to_the_next(
    school, monkeypatch, long_promises, ending
):
    """A task took the request, which ended a promise a publish had read, and ended before
    its own read after that (a full batch, or a failure its task is tried again for): the
    next task's take owes that read."""
    monkeypatch.setattr(fan_out_module, "FAN_OUT_PROMISE_EVENTS", 1)
    SubscriptionFactory(school=school, topics=["*"])
    _publish(school, course="first")
    real_hold, real_take = fan_out_module.fan_out_request_hold, fan_out_module.fan_out_request_take
    real_read = fan_out_module._events_fan_out_waiting
    publishers: list[_PublisherHeldOpen] = []
    takes = []

    def hold_then_a_publish_reads_the_promise(**kwargs):
        made = real_hold(**kwargs)
        if not publishers:
            publishers.append(_PublisherHeldOpen(school, "counting on the promise"))
        return made

    def take_then_a_burst(*args, **kwargs):
        takes.append(real_take())
        if len(takes) == 2 and ending == "full batch":  # the take that ended the promise
            for n in range(2):
                _publish(school, course=f"burst {n}")
        return takes[-1]

    def read_or_fail(**kwargs):
        if len(takes) == 2 and ending == "database error":
            raise OperationalError("the database went away")
        return real_read(**kwargs)

    monkeypatch.setattr(
        fan_out_module, "fan_out_request_hold", hold_then_a_publish_reads_the_promise
    )
    monkeypatch.setattr(fan_out_module, "fan_out_request_take", take_then_a_burst)
    monkeypatch.setattr(fan_out_module, "_events_fan_out_waiting", read_or_fail)

    if ending == "full batch":
        assert events_fan_out_pending(limit=2) == 3
    else:
        with pytest.raises(OperationalError):
            events_fan_out_pending(limit=2)
    assert len(takes) == 2

    monkeypatch.setattr(fan_out_module, "fan_out_request_take", real_take)
    _commits_after_the_next_read(monkeypatch, publishers[0], read=real_read)
    events_fan_out_pending(limit=2)

    assert publishers[0].counted_on_a_promise
    assert len(publishers[0].statements) == 1  # its insert alone
    assert not Event.objects.filter(fanned_out_at__isnull=True).exists()
    assert FanOutRequest.objects.get().read_after_ms is None  # the debt was paid
