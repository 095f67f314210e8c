"""Ingest reads schools and event types from a per-process copy: changes made here show at
once, and a row deleted elsewhere a moment ago never turns into a server error."""

import pytest
from django.core.cache import caches
from django.db import connection

from events.models import Event, EventType
from events.selectors import event_type_for_publish
from schools.selectors import school_by_slug
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db


def _event(slug, type="course.created"):
    return {"school": slug, "type": type, "data": {"course": {"id": "c-1"}}}


def test_a_school_is_read_once_and_dropped_when_it_changes(school, django_assert_num_queries):
    assert school_by_slug(school.slug).pk == school.pk
    with django_assert_num_queries(0):
        assert school_by_slug(school.slug).pk == school.pk

    school.name = "Renamed"
    school.save()
    with django_assert_num_queries(1):
        assert school_by_slug(school.slug).name == "Renamed"

    assert school_by_slug("no-such-school") is None
    with django_assert_num_queries(1):
        assert school_by_slug("no-such-school") is None


def test_an_event_type_changed_in_this_process_is_seen_at_once(catalog):
    assert event_type_for_publish("course.created").deprecated is False
    event_type = EventType.objects.get(key="course.created")
    event_type.deprecated = True
    event_type.save()

    assert event_type_for_publish("course.created").deprecated is True


def test_a_type_added_in_the_admin_can_be_published_at_once(platform_api, school):
    assert (
        platform_api.post(
            "/api/v1/events/", _event(school.slug, "badge.awarded"), format="json"
        ).status_code
        == 400
    )
    EventType.objects.create(key="badge.awarded", group="Badges", description="A badge.")

    response = platform_api.post(
        "/api/v1/events/", {**_event(school.slug, "badge.awarded"), "data": {}}, format="json"
    )

    assert response.status_code == 202, response.json()


@pytest.mark.django_db(transaction=True)
def test_a_school_deleted_by_another_process_is_a_404_not_a_server_error(platform_api, catalog):
    gone = SchoolFactory(slug="closing-down")
    assert platform_api.post("/api/v1/events/", _event(gone.slug), format="json").status_code == 202
    Event.objects.filter(school=gone).delete()
    assert caches["lookups"].get("school:closing-down") is not None
    with connection.cursor() as cursor:  # as another process would: no signal reaches this one
        cursor.execute("DELETE FROM schools_school WHERE id = %s", [gone.pk])

    response = platform_api.post("/api/v1/events/", _event(gone.slug), format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "No school with the slug 'closing-down'."}
