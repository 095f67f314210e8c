import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from events.models import Event, EventType
from events.services import EventIdempotencyConflict, event_publish

pytestmark = pytest.mark.django_db


def test_an_event_is_stored_with_plain_json_data(school, django_capture_on_commit_callbacks):
    occurred = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)

    with django_capture_on_commit_callbacks() as callbacks:
        event = event_publish(
            school=school,
            type="course.created",
            data={
                "course": {"id": "c1", "name": "Maths", "start": occurred},
                "seats": Decimal("12.50"),
                "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
                "day": dt.date(2026, 3, 29),
            },
            occurred_at=occurred,
        )

    stored = Event.objects.get(pk=event.pk)
    assert stored.type_id == "course.created"
    assert stored.school == school
    assert stored.occurred_at == occurred
    assert stored.fanned_out_at is None
    assert stored.data == {
        "course": {"id": "c1", "name": "Maths", "start": "2026-03-29T00:30:00+00:00"},
        "seats": "12.50",
        "ref": "12345678-1234-5678-1234-567812345678",
        "day": "2026-03-29",
    }
    assert len(callbacks) == 1  # the hand-off to fan-out, after commit


def test_an_unknown_event_type_is_refused_and_nothing_is_stored(school):
    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, type="course.exploded", data={})

    assert raised.value.message_dict == {
        "type": ["Unknown event type 'course.exploded': it is not in the event catalog."]
    }
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tags": {"a", "b"}}, "data.tags is a set, which is not JSON-serializable."),
        (
            {"course": {"when": object()}},
            "data.course.when is a object, which is not JSON-serializable.",
        ),
        ({"score": float("nan")}, "data.score is nan, which JSON cannot represent."),
        ({"list": [1, b"raw"]}, "data.list[1] is a bytes, which is not JSON-serializable."),
        ({1: "x"}, "data has the key 1; JSON object keys must be strings."),
        (
            {"at": dt.datetime(2026, 1, 1, 9, 0)},  # noqa: DTZ001 - the naive datetime under test
            "data.at is a datetime without a time zone; give an aware datetime.",
        ),
        (["not", "an", "object"], "Give a JSON object, not list."),
    ],
)
def test_data_that_is_not_json_is_refused_naming_the_path(school, data, message):
    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, type="course.created", data=data)

    assert raised.value.message_dict == {"data": [message]}
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        ({"course": {"name": "Maths"}}, ["data.course.id: 'id' is a required property"]),
        ({"student": {"id": "s1"}}, ["data.course: 'course' is a required property"]),
        (
            {"course": {"id": 1.5, "start": "2026-03-29T09:00:00", "instructors": [{}]}},
            [
                "data.course.id: 1.5 is not of type 'string', 'integer'",
                "data.course.instructors[0].id: 'id' is a required property",
                "data.course.start: '2026-03-29T09:00:00' is not an ISO-8601 date-time with a "
                "UTC offset",
            ],
        ),
    ],
)
def test_data_that_does_not_match_the_types_schema_is_refused_naming_each_path(
    school, data, messages
):
    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, type="course.created", data=data)

    assert raised.value.message_dict == {"data": messages}
    assert Event.objects.count() == 0


def test_data_may_carry_more_than_the_schema_lists(school):
    data = {"course": {"id": 7, "room": "B12"}, "campus": "Nord"}

    event = event_publish(school=school, type="course.created", data=data)

    assert Event.objects.get(pk=event.pk).data == data


def test_a_deprecated_type_is_accepted_and_a_warning_is_logged(school, caplog):
    EventType.objects.filter(key="course.locked").update(deprecated=True)
    data = {"course": {"id": "c1"}, "attendance_list_url": "https://files.example.org/a.pdf"}

    with caplog.at_level("WARNING", logger="events.services"):
        event = event_publish(school=school, type="course.locked", data=data)

    assert Event.objects.get(pk=event.pk).type_id == "course.locked"
    assert [record.getMessage() for record in caplog.records] == [
        "Event type course.locked is deprecated; published for school lycee-victor-hugo"
    ]


def test_oversized_data_is_refused_with_the_limit(school, settings):
    settings.WEBHOOKS_EVENT_DATA_MAX_BYTES = 100

    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, type="course.created", data={"blob": "x" * 200})

    assert raised.value.message_dict == {
        "data": ["The data is 211 bytes of JSON; the limit is 100 bytes."]
    }
    assert Event.objects.count() == 0


def test_a_naive_occurred_at_is_refused(school):
    with pytest.raises(ValidationError) as raised:
        event_publish(
            school=school,
            type="course.created",
            data={"course": {"id": "c1"}},
            occurred_at=dt.datetime(2026, 1, 1),  # noqa: DTZ001 - the naive datetime under test
        )

    assert list(raised.value.message_dict) == ["occurred_at"]
    assert Event.objects.count() == 0


def test_the_same_idempotency_key_returns_the_first_event_and_hands_off_once(
    school, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        first = event_publish(
            school=school,
            type="course.created",
            data={"course": {"id": "c1"}},
            idempotency_key="k-1",
        )
        again = event_publish(
            school=school,
            type="course.created",
            data={"course": {"id": "c1"}},
            idempotency_key="k-1",
        )

    assert again.pk == first.pk
    assert Event.objects.count() == 1
    assert len(callbacks) == 1


def test_an_idempotency_key_reused_for_other_data_is_a_conflict(school):
    first = event_publish(
        school=school, type="course.created", data={"course": {"id": "c1"}}, idempotency_key="k"
    )

    with pytest.raises(EventIdempotencyConflict) as raised:
        event_publish(
            school=school, type="course.created", data={"course": {"id": "c2"}}, idempotency_key="k"
        )

    assert raised.value.message_dict == {
        "idempotency_key": [
            f"This idempotency key was already used for event {first.id} with a different "
            "type or data."
        ]
    }
    assert Event.objects.count() == 1


def test_idempotency_keys_are_per_school(school):
    from tests.schools.factories import SchoolFactory

    other = SchoolFactory()

    data = {"course": {"id": "c1"}}
    first = event_publish(school=school, type="course.created", data=data, idempotency_key="k")
    second = event_publish(school=other, type="course.created", data=data, idempotency_key="k")

    assert first.pk != second.pk


@pytest.mark.parametrize(
    ("timezone", "change", "errors"),
    [
        (
            "Pacific/Kiritimati",
            {"occurred_at": dt.datetime(9999, 12, 31, 23, tzinfo=dt.UTC)},
            {
                "occurred_at": [
                    "The datetime is outside the dates every time zone can show "
                    "(0001-01-02 to 9999-12-30 UTC)."
                ]
            },
        ),
        (
            "Etc/GMT+12",
            {"data": {"course": {"id": "c1", "start": "0001-01-01T06:00:00Z"}}},
            {
                "data": [
                    "data.course.start is outside the dates every time zone can show "
                    "(0001-01-02 to 9999-12-30 UTC)."
                ]
            },
        ),
        (
            "Europe/Paris",
            {"data": {"course": {"id": "c1", "start": dt.datetime(9999, 12, 31, tzinfo=dt.UTC)}}},
            {
                "data": [
                    "data.course.start is outside the dates every time zone can show "
                    "(0001-01-02 to 9999-12-30 UTC)."
                ]
            },
        ),
        (
            "Europe/Paris",
            {"data": {"course": {"id": "c1\x00"}, "k\ud800": 1}},
            {
                "data": [
                    "data has a key that contains an unpaired surrogate (U+D800), which is not "
                    "valid Unicode.",
                    "data.course.id contains a NUL character (U+0000), which cannot be stored.",
                ]
            },
        ),
    ],
)
def test_an_event_no_school_zone_can_show_or_no_database_can_store_is_refused(
    school, timezone, change, errors
):
    school.timezone = timezone
    school.save()
    fields = {"type": "course.created", "data": {"course": {"id": "c1"}}, **change}

    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, **fields)

    assert raised.value.message_dict == errors
    assert Event.objects.count() == 0


def test_data_nested_deeper_than_the_limit_is_refused_without_recursing(school):
    data: dict = {"course": {"id": "c1"}}
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    data["extra"] = deep

    with pytest.raises(ValidationError) as raised:
        event_publish(school=school, type="course.created", data=data)

    [message] = raised.value.message_dict["data"]
    assert message.endswith("is nested more than 32 levels deep; flatten it.")
    assert Event.objects.count() == 0


def test_a_published_event_is_stored_exactly_as_returned_and_saves_again_as_an_update(school):
    event = event_publish(
        school=school, type="course.created", data={"course": {"id": "c1"}}, idempotency_key="k-9"
    )

    stored = Event.objects.get(pk=event.pk)
    for field in Event._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(event, field.attname), field.name
    # The instance knows it is stored: saving it updates the row instead of inserting another.
    event.fanned_out_at = event.created_at
    event.save()
    assert Event.objects.count() == 1
    assert Event.objects.get(pk=event.pk).fanned_out_at == event.created_at


def test_a_second_insert_with_a_used_key_raises_the_integrity_error_the_race_relies_on(school):
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from events.services.publish import _event_insert

    event_publish(
        school=school, type="course.created", data={"course": {"id": "c1"}}, idempotency_key="k"
    )
    # What a publisher that lost the race between its lookup and its insert runs into.
    with pytest.raises(IntegrityError), transaction.atomic():
        _event_insert(
            Event(
                school=school,
                type_id="course.created",
                data={"course": {"id": "c1"}},
                occurred_at=timezone.now(),
                idempotency_key="k",
            )
        )
    assert Event.objects.count() == 1
