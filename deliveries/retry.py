"""The retry schedule and what is worth retrying. Pure functions, no database access.

The default is edudip's: attempt 1 at once, then gaps of 2 s, 4 s, 8 s, ... doubling, and the
last (17th) attempt 24 h after the first. Offsets are measured from the delivery's creation so the
window holds however long the attempts themselves took.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass

from .transport import ErrorKind


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 2.0
    max_attempts: int = 17
    window_seconds: float = 24 * 3600.0
    jitter: float = 0.1

    def offset_seconds(self, attempt: int) -> float:
        """Seconds after the first attempt at which attempt number ``attempt`` is due."""
        if attempt <= 1:
            return 0.0
        if attempt >= self.max_attempts:
            return self.window_seconds
        return min(self.base_seconds * (2 ** (attempt - 1) - 1), self.window_seconds)

    def next_attempt_at(
        self, *, created_at: dt.datetime, attempts_made: int, now: dt.datetime
    ) -> dt.datetime | None:
        """When the next attempt is due, or None when the schedule is exhausted.

        Jitter moves an attempt later by up to ``jitter`` times its gap, never past the window.
        """
        upcoming = attempts_made + 1
        if upcoming > self.max_attempts:
            return None
        offset = self.offset_seconds(upcoming)
        gap = offset - self.offset_seconds(attempts_made)
        offset = min(offset + gap * self.jitter * random.random(), self.window_seconds)  # noqa: S311
        return max(created_at + dt.timedelta(seconds=offset), now)

    def deadline(self, created_at: dt.datetime) -> dt.datetime:
        """No automatic attempt is scheduled after this time."""
        return created_at + dt.timedelta(seconds=self.window_seconds)


NOT_RETRYABLE = frozenset(
    {ErrorKind.BLOCKED, ErrorKind.INVALID_URL, ErrorKind.DISABLED, ErrorKind.TEMPLATE}
)


def is_retryable(*, error_kind: str, status: int | None) -> bool:
    """Whether a failed attempt should be tried again on the schedule.

    Every failure is retried (network errors, timeouts, any non-2xx) except a destination that is
    not allowed or not a valid URL, a disabled subscription, and 410 Gone (the receiver asked to
    stop).
    """
    if error_kind in NOT_RETRYABLE:
        return False
    return status != 410


def retry_after_seconds(value: str | None, *, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())
