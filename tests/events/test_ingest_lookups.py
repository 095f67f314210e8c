"""Ingest reads schools and event types from a per-process copy: changes made here show at
once, and a row deleted elsewhere a moment ago never turns into a server error."""

import pytest
from django.core.cache import caches
from django.db import connection

from events.models import Event, EventType, ScheduledEvent
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deliver_at", [None, "2099-01-01T00:00:00+00:00"])
def test_a_slug_another_process_gave_to_another_school_reaches_that_school(
    platform_api, catalog, deliver_at
):
    # Given a school whose events were published through this process (its copy is kept),
    # then renamed in another process, and its old slug given to a new school there
    old = SchoolFactory(slug="lycee-hugo")
    assert platform_api.post("/api/v1/events/", _event(old.slug), format="json").status_code == 202
    assert caches["lookups"].get("school:lycee-hugo") is not None
    with connection.cursor() as cursor:  # as another process would: no signal reaches this one
        cursor.execute("UPDATE schools_school SET slug = 'lycee-hugo-old' WHERE id = %s", [old.pk])
        cursor.execute(
            "INSERT INTO schools_school (slug, name, timezone, language, daily_event_time, "
            "created_at) SELECT 'lycee-hugo', 'Lycée Hugo (new)', timezone, language, "
            "daily_event_time, created_at FROM schools_school WHERE id = %s RETURNING id",
            [old.pk],
        )
        [new_id] = cursor.fetchone()
    body = _event("lycee-hugo", "course.started" if deliver_at else "course.created")
    if deliver_at:
        body = {
            **body,
            "data": EventType.objects.get(key="course.started").sample_payload,
            "deliver_at": deliver_at,
        }

    # When the platform publishes (or schedules) an event for that slug through this process
    response = platform_api.post("/api/v1/events/", body, format="json")

    # Then it is the new school's: the old school's webhooks never get it
    assert response.status_code == 202, response.json()
    model = ScheduledEvent if deliver_at else Event
    assert model.objects.get(pk=response.json()["id"]).school_id == new_id
