"""event_types_sync: what a fresh install and an upgrade do to the EventType table."""

import pytest

from events.catalog import EVENT_TYPES
from events.models import Event, EventType
from events.services import event_publish, event_types_sync

pytestmark = pytest.mark.django_db


def test_the_migrated_database_holds_the_whole_catalog_as_shipped(db):
    rows = {row.key: row for row in EventType.objects.all()}

    assert sorted(rows) == sorted(entry["key"] for entry in EVENT_TYPES)
    for entry in EVENT_TYPES:
        row = rows[entry["key"]]
        assert row.shipped is True
        assert (row.group, row.description, row.version, row.deprecated) == (
            entry["group"],
            entry["description"],
            entry["version"],
            entry["deprecated"],
        )
        assert row.sample_payload == entry["sample_payload"]
        assert row.json_schema == entry["json_schema"]


def test_a_second_sync_writes_nothing(db):
    assert event_types_sync() == 0


def test_a_type_changed_in_the_database_is_restored_from_the_catalog(db):
    EventType.objects.filter(key="course.created").update(description="Edited by hand", version=9)

    written = event_types_sync()

    row = EventType.objects.get(key="course.created")
    assert written == 1
    assert (row.description, row.version) == (
        "A course was created.",
        1,
    )


def test_a_shipped_type_dropped_from_the_catalog_is_deprecated_and_its_events_kept(school):
    event = event_publish(
        school=school,
        type="course.locked",
        data={"course": {"id": "c1"}, "attendance_list_url": "https://files.example.org/a.pdf"},
    )

    event_types_sync(entries=[entry for entry in EVENT_TYPES if entry["key"] != "course.locked"])

    row = EventType.objects.get(key="course.locked")
    assert (row.shipped, row.deprecated) == (True, True)
    assert Event.objects.get(pk=event.pk).type_id == "course.locked"
    assert EventType.objects.filter(deprecated=True).count() == 1


def test_a_dropped_type_that_comes_back_is_no_longer_deprecated(db):
    event_types_sync(entries=[entry for entry in EVENT_TYPES if entry["key"] != "course.locked"])

    event_types_sync()

    assert EventType.objects.get(key="course.locked").deprecated is False


def test_types_added_by_operators_are_left_alone(db):
    EventType.objects.create(key="grade.published", group="Grades", description="Ours.")

    event_types_sync(entries=[entry for entry in EVENT_TYPES if entry["key"] != "course.locked"])

    row = EventType.objects.get(key="grade.published")
    assert (row.group, row.description, row.shipped, row.deprecated) == (
        "Grades",
        "Ours.",
        False,
        False,
    )
