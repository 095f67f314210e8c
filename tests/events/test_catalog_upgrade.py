"""Upgrading an install that has the first, five-type catalog: the migrations bring the whole
catalog in and leave school data and operators' own types alone."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from events.catalog import EVENT_TYPES

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("events", "0002_load_catalog")]
OLD_KEYS = [
    "course.created",
    "course.updated",
    "course.deleted",
    "student.created",
    "student.signed",
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_an_upgrade_loads_the_catalog_and_keeps_school_data_and_operator_types(catalog):
    # Back to every app's latest migration, not only events': going back to events 0002 also
    # unapplies what depends on it in other apps (the admin groups, the audit trail).
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = _migrate(BEFORE)
    try:
        EventType = old.get_model("events", "EventType")
        EventType.objects.exclude(key__in=OLD_KEYS).delete()
        EventType.objects.filter(key="course.created").update(description="Old text")
        EventType.objects.create(key="grade.published", group="Grades", description="Ours.")
        School = old.get_model("schools", "School")
        school = School.objects.create(name="Old School", slug="old-school")
        Event = old.get_model("events", "Event")
        event = Event.objects.create(
            school=school,
            type_id="course.created",
            data={"anything": "as it was"},
            occurred_at=dt.datetime(2026, 1, 5, 8, tzinfo=dt.UTC),
        )
    finally:
        new = _migrate(latest)

    EventType = new.get_model("events", "EventType")
    shipped = EventType.objects.filter(shipped=True)
    assert sorted(shipped.values_list("key", flat=True)) == sorted(e["key"] for e in EVENT_TYPES)
    assert EventType.objects.get(key="course.created").description == "A course was created."
    operator = EventType.objects.get(key="grade.published")
    assert (operator.description, operator.shipped, operator.deprecated) == ("Ours.", False, False)
    Event = new.get_model("events", "Event")
    kept = Event.objects.get(pk=event.pk)
    assert (kept.type_id, kept.data) == ("course.created", {"anything": "as it was"})
