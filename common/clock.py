"""The one clock every host agrees on: the database's.

Hosts' clocks differ by seconds. The engine compares times one process wrote with the time
another reads: a lease's end (written by the worker that renews it, read by every claim and
the sweeper), a webhook's rate bucket and circuit breaker, a retry's due time, an event's
publication time (a catch-up's order), a pause. Taken from each host's own clock, a host a
few seconds ahead sees a lease held and renewed by another as run out (it sends that delivery
again while its first attempt is in flight, and counts nothing in flight for its webhook), and
refills a bucket another host counted with the seconds between their clocks (a second burst at
once); a host behind sends retries early, before a receiver's ``Retry-After``; events published
on two web hosts sort by their clocks, not by when they were published.

``db_now()`` is PostgreSQL's clock as seen from this process: how far this host's clock is from
the database's is measured with one query (``clock_timestamp()``, halfway through the round
trip) and again every ``_RESYNC_SECONDS``; in between it costs nothing but reading the local
clock. A difference within the measurement's own uncertainty (the round trip, at least a
millisecond) counts as none, so a single machine (development, CI) sees its own clock
unchanged. Without PostgreSQL (the embedded SQLite setup: one machine) it is the local clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from django.db import DatabaseError, connection
from django.utils import timezone

logger = logging.getLogger(__name__)

_RESYNC_SECONDS = 30.0
# A failed measurement (the database unreachable) is tried again this much sooner.
_RETRY_SECONDS = 5.0
# Warn once the clocks are this far apart: an unsynchronised host (NTP stopped).
_WARN_SECONDS = 1.0

_lock = threading.Lock()
_offset: dt.timedelta | None = None
_next_sync = 0.0  # time.monotonic() of the next measurement


def db_now(*, measure: bool = True) -> dt.datetime:
    """The current time by the database's clock (see the module docstring). ``measure``
    False: by the last measurement, without a query (the database may be unreachable)."""
    if connection.vendor != "postgresql":
        return timezone.now()
    if not measure:
        return timezone.now() + (_offset or dt.timedelta(0))
    return timezone.now() + _offset_get()


def _offset_get() -> dt.timedelta:
    global _offset, _next_sync
    known = _offset
    if known is not None and (time.monotonic() < _next_sync or connection.in_atomic_block):
        # Inside a transaction the last measurement does: no statement of its own there.
        return known
    with _lock:
        if _offset is not None and time.monotonic() < _next_sync:
            return _offset
        try:
            measured = _offset_measure()
        except DatabaseError:
            if _offset is None:
                raise  # the caller's own statements would fail as well
            _next_sync = time.monotonic() + _RETRY_SECONDS
            return _offset
        if abs(measured.total_seconds()) >= _WARN_SECONDS and (
            _offset is None or abs((measured - _offset).total_seconds()) >= _WARN_SECONDS
        ):
            logger.warning(
                "This host's clock is %.1f s %s the database's; the database's is used",
                abs(measured.total_seconds()),
                "behind" if measured > dt.timedelta(0) else "ahead of",
            )
        _offset = measured
        _next_sync = time.monotonic() + _RESYNC_SECONDS
        return measured


def _offset_measure() -> dt.timedelta:
    """The database's clock minus this host's, or zero within the round trip's uncertainty."""
    with connection.cursor() as cursor:
        before = timezone.now()
        cursor.execute("SELECT clock_timestamp()")
        after = timezone.now()
        (database,) = cursor.fetchone()
    round_trip = after - before
    offset: dt.timedelta = database - (before + round_trip / 2)
    if abs(offset) <= max(round_trip, dt.timedelta(milliseconds=1)):
        return dt.timedelta(0)
    return offset


def db_clock_forget() -> None:
    """Measure again at the next ``db_now()`` (a host whose clock was just set; tests)."""
    global _offset, _next_sync
    with _lock:
        _offset = None
        _next_sync = 0.0
