"""Wall-clock arithmetic for daily events. Pure functions, no database access.

A daily run is "at ``at`` o'clock on each day, as the clocks of time zone ``tz`` show it". Two days
a year in zones with daylight saving time, that needs a rule:

- **Spring forward** (the clocks jump, say from 02:00 to 03:00): a time inside the gap (02:30)
  never shows on the clocks. The run fires at the first instant after it that exists, the moment
  of the jump (03:00 new time). It is not skipped.
- **Fall back** (the clocks repeat, say 02:00-03:00 twice): a time inside the repeated hour
  shows twice. The run fires at its first occurrence, once.

Every other day the run fires exactly when the clocks show ``at``. Runs are named by their day
(the date in ``tz``), which is what makes "once per day" checkable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from zoneinfo import ZoneInfo

UTC = dt.UTC


class WallClock(Enum):
    """How a local date and time maps to instants in a zone."""

    NORMAL = "normal"  # exactly one instant
    SKIPPED = "skipped"  # none: the clocks jump over it (spring forward)
    REPEATED = "repeated"  # two: the clocks show it twice (fall back)


@dataclass(frozen=True)
class DailyRun:
    """One run of a daily schedule: the day it is for (in the schedule's zone) and its instant."""

    day: dt.date
    due_at: dt.datetime  # aware, in UTC


def wall_clock_kind(local: dt.datetime, tz: ZoneInfo) -> WallClock:
    """Whether the naive local datetime ``local`` exists once, never or twice in ``tz``."""
    naive = local.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) != naive:
        return WallClock.SKIPPED
    return WallClock.NORMAL if first == second else WallClock.REPEATED


def wall_clock_instant(day: dt.date, at: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The instant (UTC) at which the clocks of ``tz`` show ``at`` on ``day``.

    A time the clocks skip gives the instant of the jump (the first existing instant after it);
    a time they show twice gives the first occurrence. ``at`` must be naive (no tzinfo).
    """
    naive = dt.datetime.combine(day, at.replace(tzinfo=None))
    kind = wall_clock_kind(naive, tz)
    if kind is not WallClock.SKIPPED:
        # fold=0 is the earlier of two occurrences (PEP 495).
        return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    # Inside a gap the two folds give the instants on either side of the jump; find the jump.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if low > high:
        low, high = high, low
    before = low.astimezone(tz).utcoffset()
    # Offsets change on whole seconds: bisect to the first second with the new offset.
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if dt.datetime.fromtimestamp(middle, tz).utcoffset() == before:
            low_s = middle
        else:
            high_s = middle
    return dt.datetime.fromtimestamp(high_s, UTC)


def daily_run(day: dt.date, at: dt.time, tz: ZoneInfo) -> DailyRun:
    """The run of the daily schedule (``at`` in ``tz``) for ``day``."""
    return DailyRun(day=day, due_at=wall_clock_instant(day, at, tz))


def daily_run_latest(now: dt.datetime, at: dt.time, tz: ZoneInfo) -> DailyRun:
    """The most recent run due at or before ``now`` (aware)."""
    today = now.astimezone(tz).date()
    for back in range(3):
        run = daily_run(today - dt.timedelta(days=back), at, tz)
        if run.due_at <= now:
            return run
    raise AssertionError(f"No run of {at} {tz} in the three days before {now}")  # pragma: no cover


def daily_run_next(now: dt.datetime, at: dt.time, tz: ZoneInfo) -> DailyRun:
    """The first run due strictly after ``now`` (aware)."""
    latest = daily_run_latest(now, at, tz)
    for ahead in range(1, 4):
        run = daily_run(latest.day + dt.timedelta(days=ahead), at, tz)
        if run.due_at > now:
            return run
    raise AssertionError(f"No run of {at} {tz} in the three days after {now}")  # pragma: no cover
