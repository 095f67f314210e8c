"""The wall-clock arithmetic of daily runs, across daylight-saving changes. No database."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.schedule import (
    DailyRun,
    WallClock,
    daily_run,
    daily_run_latest,
    daily_run_next,
    wall_clock_instant,
    wall_clock_kind,
)

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def _utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def _wall(year, month, day, hour, minute):
    """A naive local date and time, as the clocks on a wall show it."""
    return dt.datetime.combine(dt.date(year, month, day), dt.time(hour, minute))


@pytest.mark.parametrize(
    ("local", "tz", "kind"),
    [
        (_wall(2026, 3, 29, 2, 30), PARIS, WallClock.SKIPPED),
        (_wall(2026, 3, 29, 3, 0), PARIS, WallClock.NORMAL),
        (_wall(2026, 10, 25, 2, 30), PARIS, WallClock.REPEATED),
        (_wall(2026, 10, 25, 3, 0), PARIS, WallClock.NORMAL),
        (_wall(2026, 3, 8, 2, 0), NEW_YORK, WallClock.SKIPPED),
        (_wall(2026, 11, 1, 1, 59), NEW_YORK, WallClock.REPEATED),
        (_wall(2026, 3, 29, 2, 30), TOKYO, WallClock.NORMAL),
    ],
)
def test_a_wall_clock_time_exists_once_never_or_twice(local, tz, kind):
    assert wall_clock_kind(local, tz) is kind


@pytest.mark.parametrize(
    ("day", "at", "tz", "expected"),
    [
        # Europe/Paris springs forward on 2026-03-29 at 02:00 CET -> 03:00 CEST.
        (dt.date(2026, 3, 28), dt.time(0, 5), PARIS, _utc(2026, 3, 27, 23, 5)),
        (dt.date(2026, 3, 29), dt.time(0, 5), PARIS, _utc(2026, 3, 28, 23, 5)),
        (dt.date(2026, 3, 30), dt.time(0, 5), PARIS, _utc(2026, 3, 29, 22, 5)),
        (dt.date(2026, 3, 29), dt.time(2, 30), PARIS, _utc(2026, 3, 29, 1, 0)),  # at the jump
        (dt.date(2026, 3, 29), dt.time(2, 0), PARIS, _utc(2026, 3, 29, 1, 0)),
        (dt.date(2026, 3, 29), dt.time(3, 0), PARIS, _utc(2026, 3, 29, 1, 0)),
        # ... and falls back on 2026-10-25 at 03:00 CEST -> 02:00 CET.
        (dt.date(2026, 10, 24), dt.time(0, 5), PARIS, _utc(2026, 10, 23, 22, 5)),
        (dt.date(2026, 10, 25), dt.time(0, 5), PARIS, _utc(2026, 10, 24, 22, 5)),
        (dt.date(2026, 10, 26), dt.time(0, 5), PARIS, _utc(2026, 10, 25, 23, 5)),
        (dt.date(2026, 10, 25), dt.time(2, 30), PARIS, _utc(2026, 10, 25, 0, 30)),  # 1st of 2
        (dt.date(2026, 10, 25), dt.time(3, 0), PARIS, _utc(2026, 10, 25, 2, 0)),
        # America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT, 2026-11-01 02:00 EDT -> 01:00 EST.
        (dt.date(2026, 3, 7), dt.time(2, 30), NEW_YORK, _utc(2026, 3, 7, 7, 30)),
        (dt.date(2026, 3, 8), dt.time(2, 30), NEW_YORK, _utc(2026, 3, 8, 7, 0)),
        (dt.date(2026, 3, 9), dt.time(2, 30), NEW_YORK, _utc(2026, 3, 9, 6, 30)),
        (dt.date(2026, 11, 1), dt.time(1, 30), NEW_YORK, _utc(2026, 11, 1, 5, 30)),
        (dt.date(2026, 11, 2), dt.time(1, 30), NEW_YORK, _utc(2026, 11, 2, 6, 30)),
        (dt.date(2026, 3, 8), dt.time(0, 5), NEW_YORK, _utc(2026, 3, 8, 5, 5)),
        (dt.date(2026, 3, 9), dt.time(0, 5), NEW_YORK, _utc(2026, 3, 9, 4, 5)),
        # Asia/Tokyo has no daylight saving time: the same instant of every day.
        (dt.date(2026, 3, 29), dt.time(0, 5), TOKYO, _utc(2026, 3, 28, 15, 5)),
        (dt.date(2026, 10, 25), dt.time(0, 5), TOKYO, _utc(2026, 10, 24, 15, 5)),
        # The default schedule: 00:07 UTC.
        (dt.date(2026, 3, 29), dt.time(0, 7), ZoneInfo("UTC"), _utc(2026, 3, 29, 0, 7)),
        # A zone that springs forward at midnight (America/Santiago, 2026-09-06 00:00 -> 01:00).
        (dt.date(2026, 9, 6), dt.time(0, 5), ZoneInfo("America/Santiago"), _utc(2026, 9, 6, 4)),
        # Australia/Lord_Howe moves its clocks by 30 minutes (02:00 -> 02:30 on 2026-10-04).
        (
            dt.date(2026, 10, 4),
            dt.time(2, 10),
            ZoneInfo("Australia/Lord_Howe"),
            _utc(2026, 10, 3, 15, 30),
        ),
    ],
)
def test_the_instant_of_a_local_time_on_a_day(day, at, tz, expected):
    assert wall_clock_instant(day, at, tz) == expected


def test_the_latest_run_is_the_one_due_at_or_before_now():
    at = dt.time(0, 5)

    assert daily_run_latest(_utc(2026, 3, 28, 23, 5), at, PARIS) == DailyRun(
        dt.date(2026, 3, 29), _utc(2026, 3, 28, 23, 5)
    )
    assert daily_run_latest(_utc(2026, 3, 28, 23, 4, 59), at, PARIS) == DailyRun(
        dt.date(2026, 3, 28), _utc(2026, 3, 27, 23, 5)
    )
    assert daily_run_next(_utc(2026, 3, 28, 23, 5), at, PARIS) == DailyRun(
        dt.date(2026, 3, 30), _utc(2026, 3, 29, 22, 5)
    )


def _simulate(tz, at, start, days, step_seconds):
    """Tick every ``step_seconds`` like the beat task, publishing a day's run when it is due."""
    published = {}
    now = start
    end = start + dt.timedelta(days=days)
    while now < end:
        run = daily_run_latest(now, at, tz)
        if run.day not in published and run.due_at >= start:
            published[run.day] = (run, now)
        now += dt.timedelta(seconds=step_seconds)
    return published


@pytest.mark.parametrize(
    ("tz", "at", "start"),
    [
        (PARIS, dt.time(0, 5), _utc(2026, 3, 27)),
        (PARIS, dt.time(0, 5), _utc(2026, 10, 23)),
        (PARIS, dt.time(2, 30), _utc(2026, 3, 27)),
        (PARIS, dt.time(2, 30), _utc(2026, 10, 23)),
        (NEW_YORK, dt.time(1, 30), _utc(2026, 10, 30)),
        (NEW_YORK, dt.time(2, 30), _utc(2026, 3, 6)),
        (TOKYO, dt.time(0, 5), _utc(2026, 3, 27)),
    ],
)
def test_ticking_every_30_seconds_across_a_change_fires_each_day_once_on_time(tz, at, start):
    published = _simulate(tz, at, start, days=5, step_seconds=30)

    days = sorted(published)
    assert days == [days[0] + dt.timedelta(days=n) for n in range(len(days))]
    assert len(days) >= 4
    for day, (run, fired_at) in published.items():
        assert run.day == day
        assert run.due_at <= fired_at < run.due_at + dt.timedelta(seconds=30)
        local = run.due_at.astimezone(tz)
        if wall_clock_kind(dt.datetime.combine(day, at), tz) is WallClock.SKIPPED:
            assert local.time() > at  # the moment the clocks jumped past it
        else:
            assert (local.date(), local.time()) == (day, at)


ZONES = st.sampled_from(
    [
        "Europe/Paris",
        "America/New_York",
        "Asia/Tokyo",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "America/St_Johns",
        "UTC",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    zone=ZONES,
    day=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2037, 12, 31)),
    at=st.times(),
)
def test_a_run_is_at_the_wall_clock_time_or_at_the_jump_past_it(zone, day, at):
    tz = ZoneInfo(zone)
    instant = wall_clock_instant(day, at, tz)
    local = instant.astimezone(tz)

    if wall_clock_kind(dt.datetime.combine(day, at), tz) is WallClock.SKIPPED:
        just_before = (instant - dt.timedelta(seconds=1)).astimezone(tz)
        assert just_before.utcoffset() != local.utcoffset()  # instant is a transition
        assert (
            just_before.replace(tzinfo=None)
            < dt.datetime.combine(day, at)
            < local.replace(tzinfo=None)
        )
    else:
        assert local.replace(tzinfo=None) == dt.datetime.combine(day, at)
        assert local.fold == 0  # the first of two occurrences
    assert daily_run(day, at, tz).due_at == instant


@settings(max_examples=300, deadline=None)
@given(
    zone=ZONES,
    now=st.datetimes(min_value=_wall(2000, 1, 3, 0, 0), max_value=_wall(2037, 12, 28, 0, 0)),
    at=st.times(),
)
def test_runs_follow_each_other_one_day_apart_around_any_instant(zone, now, at):
    tz = ZoneInfo(zone)
    now = now.replace(tzinfo=UTC)

    latest = daily_run_latest(now, at, tz)
    following = daily_run_next(now, at, tz)

    assert latest.due_at <= now < following.due_at
    assert following.day == latest.day + dt.timedelta(days=1)
    assert daily_run_latest(following.due_at, at, tz) == following
    gap = following.due_at - latest.due_at
    assert dt.timedelta(hours=21) <= gap <= dt.timedelta(hours=27)
