"""Scheduled events: create, move, cancel, and publish each exactly once when due."""

import datetime as dt
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from events.models import Event, EventType, ScheduledEvent, ScheduledEventStatus
from events.selectors import scheduled_event_get
from events.services import (
    ScheduledEventConflict,
    ScheduledEventNotPending,
    scheduled_event_cancel,
    scheduled_event_create,
    scheduled_event_move,
    scheduled_events_publish_due,
)
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db

NINE = dt.datetime(2026, 3, 26, 7, 0, tzinfo=dt.UTC)  # 09:00 in Paris
START = {"course": {"id": "course-4711", "name": "Mathematics 101"}}


def _schedule(school, due_at=NINE, key="course-4711-start", data=START, type="course.started"):
    return scheduled_event_create(school=school, type=type, data=data, due_at=due_at, key=key)


def test_an_event_is_scheduled_with_its_data_checked_and_stored_as_json(school):
    scheduled = scheduled_event_create(
        school=school,
        type="course.started",
        data={"course": {"id": "course-4711", "start": NINE}},
        due_at=NINE,
        key="course-4711-start",
    )

    row = ScheduledEvent.objects.get(pk=scheduled.pk)
    assert (row.school, row.type_id, row.due_at, row.key, row.status) == (
        school,
        "course.started",
        NINE,
        "course-4711-start",
        ScheduledEventStatus.SCHEDULED,
    )
    assert row.data == {"course": {"id": "course-4711", "start": "2026-03-26T07:00:00+00:00"}}
    assert (row.published_at, row.event) == (None, None)


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"type": "course.exploded"},
            {"type": ["Unknown event type 'course.exploded': it is not in the event catalog."]},
        ),
        ({"data": {"course": {}}}, {"data": ["data.course.id: 'id' is a required property"]}),
        (
            {"due_at": dt.datetime(2026, 3, 26, 9, 0)},  # noqa: DTZ001 - the naive datetime under test
            {"due_at": ["The datetime has no time zone; give an aware datetime."]},
        ),
        ({"key": "k" * 256}, {"key": ["Use at most 255 characters."]}),
    ],
)
def test_a_scheduled_event_that_could_not_be_published_is_refused_now(school, fields, errors):
    arguments = {"type": "course.started", "data": START, "due_at": NINE, "key": "k", **fields}

    with pytest.raises(ValidationError) as raised:
        scheduled_event_create(school=school, **arguments)

    assert raised.value.message_dict == errors
    assert ScheduledEvent.objects.count() == 0


def test_scheduling_again_with_the_same_key_returns_the_first(school):
    first = _schedule(school)
    again = _schedule(school)

    assert again.pk == first.pk
    assert ScheduledEvent.objects.count() == 1


def test_the_same_key_for_another_time_is_a_conflict(school):
    _schedule(school)

    with pytest.raises(ScheduledEventConflict) as raised:
        _schedule(school, due_at=NINE + dt.timedelta(hours=1))

    assert raised.value.message_dict == {
        "key": [
            "The key 'course-4711-start' is already used by a scheduled course.started event due "
            "at 2026-03-26T07:00:00+00:00, with a different type, data or time: move or cancel "
            "that one instead."
        ]
    }


def test_keys_are_per_school(school):
    first = _schedule(school)
    second = _schedule(SchoolFactory())

    assert first.pk != second.pk


def test_a_due_event_is_published_once_with_its_time_as_occurred_at(
    school, django_capture_on_commit_callbacks
):
    scheduled = _schedule(school)
    _schedule(school, due_at=NINE + dt.timedelta(seconds=1), key="later")

    with django_capture_on_commit_callbacks() as callbacks:
        published = scheduled_events_publish_due(now=NINE)
    again = scheduled_events_publish_due(now=NINE)

    [event] = published
    assert again == []
    assert (event.school, event.type_id, event.data, event.occurred_at) == (
        school,
        "course.started",
        START,
        NINE,
    )
    assert event.idempotency_key == f"scheduled-event:{scheduled.pk}"
    row = ScheduledEvent.objects.get(pk=scheduled.pk)
    assert (row.status, row.published_at, row.event_id) == (
        ScheduledEventStatus.PUBLISHED,
        NINE,
        event.pk,
    )
    assert ScheduledEvent.objects.get(key="later").status == ScheduledEventStatus.SCHEDULED
    assert Event.objects.count() == 1
    assert len(callbacks) == 1  # the hand-off to fan-out


def test_nothing_is_published_before_its_time(school):
    _schedule(school)

    assert scheduled_events_publish_due(now=NINE - dt.timedelta(microseconds=1)) == []
    assert Event.objects.count() == 0


def test_all_due_events_are_published_in_batches(school):
    for n in range(7):
        _schedule(school, due_at=NINE - dt.timedelta(minutes=n), key=f"k{n}")

    published = scheduled_events_publish_due(now=NINE, batch_size=3)

    assert len(published) == 7
    assert [e.occurred_at for e in published] == [
        NINE - dt.timedelta(minutes=n) for n in reversed(range(7))
    ]
    assert set(ScheduledEvent.objects.values_list("status", flat=True)) == {"published"}


def test_a_course_moved_later_is_published_at_its_new_time_only(school):
    scheduled = _schedule(school)
    later = NINE + dt.timedelta(hours=2)

    moved = scheduled_event_move(scheduled_event=scheduled, due_at=later)

    assert moved.due_at == later
    assert scheduled_events_publish_due(now=NINE) == []
    [event] = scheduled_events_publish_due(now=later)
    assert event.occurred_at == later


def test_moving_to_the_same_time_changes_nothing(school):
    scheduled = _schedule(school)

    moved = scheduled_event_move(scheduled_event=scheduled, due_at=NINE)

    assert moved.updated_at == scheduled.updated_at
    assert ScheduledEvent.objects.get(pk=scheduled.pk).updated_at == scheduled.updated_at


def test_a_move_can_replace_the_data_which_is_checked(school):
    scheduled = _schedule(school)

    with pytest.raises(ValidationError) as raised:
        scheduled_event_move(scheduled_event=scheduled, due_at=NINE, data={"course": {}})
    assert raised.value.message_dict == {"data": ["data.course.id: 'id' is a required property"]}

    scheduled_event_move(
        scheduled_event=scheduled,
        due_at=NINE,
        data={"course": {"id": "course-4711", "name": "Maths"}},
    )
    [event] = scheduled_events_publish_due(now=NINE)
    assert event.data == {"course": {"id": "course-4711", "name": "Maths"}}


def test_a_cancelled_event_is_never_published(school):
    scheduled = _schedule(school)

    cancelled = scheduled_event_cancel(scheduled_event=scheduled)
    again = scheduled_event_cancel(scheduled_event=scheduled)

    assert cancelled.status == again.status == ScheduledEventStatus.CANCELLED
    assert again.cancelled_at == cancelled.cancelled_at
    assert scheduled_events_publish_due(now=NINE + dt.timedelta(days=1)) == []
    assert Event.objects.count() == 0


def test_a_published_event_can_no_longer_be_moved_or_cancelled(school):
    scheduled = _schedule(school)
    scheduled_events_publish_due(now=NINE)

    with pytest.raises(ScheduledEventNotPending) as moved:
        scheduled_event_move(scheduled_event=scheduled, due_at=NINE + dt.timedelta(hours=1))
    with pytest.raises(ScheduledEventNotPending) as cancelled:
        scheduled_event_cancel(scheduled_event=scheduled)

    reason = "it was already published at 2026-03-26T07:00:00+00:00."
    assert moved.value.message_dict == {"status": [f"This event cannot be moved: {reason}"]}
    assert cancelled.value.message_dict == {"status": [f"This event cannot be cancelled: {reason}"]}
    assert ScheduledEvent.objects.get(pk=scheduled.pk).due_at == NINE


def test_a_cancelled_event_cannot_be_moved(school):
    scheduled = _schedule(school)
    scheduled_event_cancel(scheduled_event=scheduled)

    with pytest.raises(ScheduledEventNotPending) as raised:
        scheduled_event_move(scheduled_event=scheduled, due_at=NINE)

    assert raised.value.message_dict == {
        "status": ["This event cannot be moved: it was cancelled."]
    }


def test_an_event_whose_data_no_longer_fits_its_type_is_marked_failed_and_others_go_out(school):
    broken = _schedule(school, key="broken")
    _schedule(school, key="fine", type="course.ended")
    course_started = EventType.objects.get(key="course.started")
    course_started.json_schema = {"type": "object", "required": ["room"]}
    course_started.save()

    [event] = scheduled_events_publish_due(now=NINE)

    assert event.type_id == "course.ended"
    row = ScheduledEvent.objects.get(pk=broken.pk)
    assert row.status == ScheduledEventStatus.FAILED
    assert row.error == "data: data.room: 'room' is a required property"
    assert Event.objects.count() == 1


def test_a_scheduled_event_is_found_by_key_only_in_its_school(school):
    scheduled = _schedule(school)
    other = SchoolFactory()

    assert scheduled_event_get(school=school, key="course-4711-start") == scheduled
    assert scheduled_event_get(school=school, scheduled_event_id=scheduled.pk) == scheduled
    with pytest.raises(ScheduledEvent.DoesNotExist):
        scheduled_event_get(school=other, key="course-4711-start")


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_publish_each_due_event_exactly_once(catalog):
    school = SchoolFactory()
    for n in range(40):
        _schedule(school, key=f"k{n}")
    start = threading.Barrier(4)
    results, errors = [], []

    def publisher():
        try:
            start.wait()
            results.append(scheduled_events_publish_due(now=NINE, batch_size=5))
        except Exception as error:  # reported below; a thread cannot fail the test itself
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ids = [event.pk for batch in results for event in batch]
    assert len(ids) == len(set(ids)) == 40
    assert Event.objects.count() == 40
    assert set(ScheduledEvent.objects.values_list("status", flat=True)) == {"published"}


@pytest.mark.django_db(transaction=True)
def test_a_beat_run_without_the_database_warns_and_the_next_run_publishes(school, caplog):
    from events import tasks
    from tests.database import connection_lose

    scheduled = _schedule(school, due_at=dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC))
    connection_lose()

    tasks.scheduled_events_publish_due()  # returns: beat runs it again in a second

    assert [r.levelname for r in caplog.records if r.name == "events.tasks"] == ["WARNING"]
    assert "database is unreachable; scheduled events wait" in caplog.text
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == []
    connection.close()
    assert ScheduledEvent.objects.get(pk=scheduled.pk).status == ScheduledEventStatus.SCHEDULED

    tasks.scheduled_events_publish_due()

    assert ScheduledEvent.objects.get(pk=scheduled.pk).status == ScheduledEventStatus.PUBLISHED
    assert Event.objects.filter(school=school, type_id="course.started").count() == 1
