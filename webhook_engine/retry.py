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

from .errors import ErrorKind


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

        On schedule, attempt n is due ``offset_seconds(n)`` after creation. An attempt made late
        (workers were down) still waits its gap before the next one, so late retries never come
        back to back; none is scheduled after the window. Jitter moves an attempt later by up to
        ``jitter`` times its gap.
        """
        upcoming = attempts_made + 1
        deadline = self.deadline(created_at)
        if upcoming > self.max_attempts or now >= deadline:
            return None
        offset = self.offset_seconds(upcoming)
        gap = offset - self.offset_seconds(attempts_made)
        spread = dt.timedelta(seconds=gap * (1 + self.jitter * random.random()))  # noqa: S311
        on_schedule = created_at + dt.timedelta(seconds=offset) + spread - dt.timedelta(seconds=gap)
        return min(max(on_schedule, now + spread), deadline)

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
    if value.isascii() and value.isdigit():
        # int() refuses more than 4300 digits (Python 3.11); past 7 digits the cap applies.
        digits = value.lstrip("0") or "0"
        if len(digits) > 7:
            return float(_RETRY_AFTER_MAX_SECONDS)
        return float(min(int(digits), _RETRY_AFTER_MAX_SECONDS))
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return min(max(0.0, (when - now).total_seconds()), _RETRY_AFTER_MAX_SECONDS)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# Longer than any retry window: a larger value only means "not before the window ends".
_RETRY_AFTER_MAX_SECONDS = 7 * 86400
