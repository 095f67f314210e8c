"""The admin's scheduled events and events show their times in the row's school's zone, with
seconds and the zone named, in the reader's language (as every other admin page does)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from events.models import Event, ScheduledEvent
from events.services import scheduled_event_cancel, scheduled_event_create
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db

DUE = dt.datetime(2030, 3, 26, 3, 15, tzinfo=dt.UTC)  # 09:00 in Kathmandu (+05:45)
CANCELLED = dt.datetime(2030, 3, 25, 12, 0, tzinfo=dt.UTC)  # 17:45 in Kathmandu
NINE = '<time datetime="2030-03-26T09:00:00+05:45" title="Asia/Kathmandu">{}</time>'
CANCELLED_AT = '<time datetime="2030-03-25T17:45:00+05:45" title="Asia/Kathmandu">{}</time>'


def _client(user, language):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("language", "nine", "cancelled"),
    [
        ("en", "03/26/2030 09:00:00 +0545", "03/25/2030 17:45:00 +0545"),
        ("fr", "26/03/2030 09:00:00 +0545", "25/03/2030 17:45:00 +0545"),
        ("de", "26.03.2030 09:00:00 +0545", "25.03.2030 17:45:00 +0545"),
    ],
)
def test_a_scheduled_events_times_are_its_schools_for_support_staff(
    support_user, catalog, language, nine, cancelled
):
    # Given a course start at 09:00 in Kathmandu, cancelled the day before, and an event of
    # that school occurring at the same moment
    school = SchoolFactory(timezone="Asia/Kathmandu")
    scheduled = scheduled_event_create(
        school=school, type="course.started", data={"course": {"id": "c-1"}}, due_at=DUE
    )
    ScheduledEvent.objects.filter(pk=scheduled.pk).update(updated_at=CANCELLED)
    scheduled_event_cancel(scheduled_event=scheduled)
    ScheduledEvent.objects.filter(pk=scheduled.pk).update(
        cancelled_at=CANCELLED, updated_at=CANCELLED, created_at=CANCELLED
    )
    event = Event.objects.create(
        school=school,
        type_id="course.started",
        data={"course": {"id": "c-1"}},
        occurred_at=DUE,
        created_at=DUE,
    )
    client = _client(support_user, language)  # support staff read the admin in UTC

    # When support staff open the lists and the pages
    pages = {
        path: client.get(path).content.decode()
        for path in (
            "/admin/events/scheduledevent/",
            f"/admin/events/scheduledevent/{scheduled.pk}/change/",
            "/admin/events/event/",
            f"/admin/events/event/{event.pk}/change/",
        )
    }

    # Then each time is Kathmandu's, with its seconds and its zone, in the reader's format
    for path, page in pages.items():
        assert NINE.format(nine) in page, path
    scheduled_page = pages[f"/admin/events/scheduledevent/{scheduled.pk}/change/"]
    assert scheduled_page.count(CANCELLED_AT.format(cancelled)) == 3  # created, updated, cancelled
