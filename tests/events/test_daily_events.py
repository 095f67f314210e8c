"""cron.midnight: once per school per day, on time, caught up once, across clock changes."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from events.models import Event
from events.services import daily_events_publish_due
from tests.schools.factories import SchoolFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def _utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def _school(created_at, **fields):
    return SchoolFactory(created_at=created_at, **fields)


def test_by_default_each_school_gets_the_event_at_0007_utc_once(catalog):
    first = _school(_utc(2026, 3, 25, 12), timezone="Europe/Paris")
    second = _school(_utc(2026, 3, 25, 12), timezone="America/New_York")

    before = daily_events_publish_due(now=_utc(2026, 3, 26, 0, 6, 59))
    at = daily_events_publish_due(now=_utc(2026, 3, 26, 0, 7))
    after = daily_events_publish_due(now=_utc(2026, 3, 26, 0, 7, 30))

    assert before == after == []
    assert sorted((e.school_id, e.type_id) for e in at) == [
        (first.id, "cron.midnight"),
        (second.id, "cron.midnight"),
    ]
    for event in at:
        assert event.occurred_at == _utc(2026, 3, 26, 0, 7)
        assert event.data == {"date": "2026-03-26", "scheduled_for": "2026-03-26T00:07:00+00:00"}
        assert event.idempotency_key == "cron.midnight:2026-03-26"
    assert Event.objects.count() == 2


def test_a_school_with_a_local_time_gets_it_at_that_time_in_its_zone(catalog):
    school = _school(_utc(2026, 3, 1), timezone="Europe/Paris", daily_event_time=dt.time(0, 5))

    # 00:04:59 on 26 March in Paris: the latest run is 25 March's, never sent, so it goes now.
    [late] = daily_events_publish_due(now=_utc(2026, 3, 25, 23, 4, 59))
    assert daily_events_publish_due(now=_utc(2026, 3, 25, 23, 4, 59)) == []
    [event] = daily_events_publish_due(now=_utc(2026, 3, 25, 23, 5))

    assert late.data == {"date": "2026-03-25", "scheduled_for": "2026-03-24T23:05:00+00:00"}

    assert event.school == school
    assert event.occurred_at == _utc(2026, 3, 25, 23, 5)  # 00:05 on 26 March in Paris
    assert event.data == {"date": "2026-03-26", "scheduled_for": "2026-03-25T23:05:00+00:00"}


def test_a_missed_day_is_caught_up_once_and_older_ones_are_not(catalog):
    school = _school(_utc(2026, 3, 1))
    # Beat was down from 23 March: the runs of 23, 24 and 25 March never happened.
    daily_events_publish_due(now=_utc(2026, 3, 22, 8))

    caught_up = daily_events_publish_due(now=_utc(2026, 3, 25, 15))
    again = daily_events_publish_due(now=_utc(2026, 3, 25, 15, 0, 30))

    [event] = caught_up
    assert again == []
    assert event.occurred_at == _utc(2026, 3, 25, 0, 7)
    assert list(
        Event.objects.filter(school=school).order_by("occurred_at").values_list("data", flat=True)
    ) == [
        {"date": "2026-03-22", "scheduled_for": "2026-03-22T00:07:00+00:00"},
        {"date": "2026-03-25", "scheduled_for": "2026-03-25T00:07:00+00:00"},
    ]


def test_a_new_school_gets_no_event_for_a_run_before_it_existed(catalog):
    _school(_utc(2026, 3, 26, 9))

    assert daily_events_publish_due(now=_utc(2026, 3, 26, 12)) == []
    assert len(daily_events_publish_due(now=_utc(2026, 3, 27, 0, 7))) == 1


def test_choosing_an_earlier_time_the_same_day_sends_no_second_event(catalog):
    school = _school(_utc(2026, 3, 1), daily_event_time=dt.time(18, 0), timezone="Europe/Paris")
    daily_events_publish_due(now=_utc(2026, 3, 26, 17, 0))  # 18:00 in Paris

    school.daily_event_time = dt.time(0, 5)
    school.save()
    later_that_day = daily_events_publish_due(now=_utc(2026, 3, 26, 20))
    next_day = daily_events_publish_due(now=_utc(2026, 3, 26, 23, 5))

    assert later_that_day == []
    assert [e.data["date"] for e in next_day] == ["2026-03-27"]


def _walk(start, end, step_minutes):
    """Call the service like beat would, every ``step_minutes``; return (called at, event)."""
    published = []
    now = start
    while now < end:
        published += [(now, event) for event in daily_events_publish_due(now=now)]
        now += dt.timedelta(minutes=step_minutes)
    return published


@pytest.mark.parametrize(
    ("zone", "at", "start", "days", "expected_local"),
    [
        # Paris springs forward on Sunday 29 March 2026 (02:00 -> 03:00).
        ("Europe/Paris", dt.time(0, 5), _utc(2026, 3, 27, 12), 4, ["00:05"] * 4),
        (
            "Europe/Paris",
            dt.time(2, 30),
            _utc(2026, 3, 27, 12),
            4,
            ["02:30", "03:00", "02:30", "02:30"],
        ),
        # ... and falls back on Sunday 25 October 2026 (03:00 -> 02:00).
        ("Europe/Paris", dt.time(0, 5), _utc(2026, 10, 23, 12), 4, ["00:05"] * 4),
        ("Europe/Paris", dt.time(2, 30), _utc(2026, 10, 23, 12), 4, ["02:30"] * 4),
        # New York: 8 March (02:00 -> 03:00) and 1 November 2026 (02:00 -> 01:00).
        (
            "America/New_York",
            dt.time(2, 30),
            _utc(2026, 3, 6, 12),
            4,
            ["02:30", "03:00", "02:30", "02:30"],
        ),
        ("America/New_York", dt.time(1, 30), _utc(2026, 10, 30, 12), 4, ["01:30"] * 4),
        # Tokyo has no daylight saving time.
        ("Asia/Tokyo", dt.time(0, 5), _utc(2026, 3, 27, 12), 4, ["00:05"] * 4),
    ],
)
def test_a_local_time_fires_once_a_day_on_both_sides_of_a_clock_change(
    catalog, zone, at, start, days, expected_local
):
    tz = ZoneInfo(zone)
    school = _school(start, timezone=zone, daily_event_time=at)

    published = _walk(start, start + dt.timedelta(days=days), step_minutes=15)

    local_dates = [event.occurred_at.astimezone(tz).date() for _, event in published]
    first = local_dates[0]
    assert local_dates == [first + dt.timedelta(days=n) for n in range(days)]  # none skipped
    assert [e.data["date"] for _, e in published] == [d.isoformat() for d in local_dates]
    assert [
        event.occurred_at.astimezone(tz).strftime("%H:%M") for _, event in published
    ] == expected_local
    for called_at, event in published:
        assert event.occurred_at <= called_at < event.occurred_at + dt.timedelta(minutes=15)
    assert Event.objects.filter(school=school).count() == days  # none twice
