import datetime as dt
import itertools

import pytest

from webhook_engine.errors import ErrorKind
from webhook_engine.retry import RetryPolicy, is_retryable, retry_after_seconds

CREATED = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)


def test_default_schedule_is_edudips_doubling_gaps_with_the_17th_attempt_at_24_hours():
    policy = RetryPolicy()

    offsets = [policy.offset_seconds(attempt) for attempt in range(1, 18)]

    gaps = [later - earlier for earlier, later in itertools.pairwise(offsets)]
    assert offsets[0] == 0
    assert gaps[:15] == [2.0 * 2**k for k in range(15)]  # 2 s, 4 s, 8 s, ... 32768 s
    assert offsets[15] == 65534.0  # 16th attempt, about 18.2 h after the first
    assert offsets[16] == 86400.0  # 17th attempt, 24 h after the first


def test_next_attempt_without_jitter_follows_the_offsets():
    policy = RetryPolicy(jitter=0)

    second = policy.next_attempt_at(created_at=CREATED, attempts_made=1, now=CREATED)
    third = policy.next_attempt_at(created_at=CREATED, attempts_made=2, now=CREATED)
    last = policy.next_attempt_at(created_at=CREATED, attempts_made=16, now=CREATED)

    assert second == CREATED + dt.timedelta(seconds=2)
    assert third == CREATED + dt.timedelta(seconds=6)
    assert last == CREATED + dt.timedelta(hours=24)


def test_schedule_is_exhausted_after_the_last_attempt():
    policy = RetryPolicy()

    assert policy.next_attempt_at(created_at=CREATED, attempts_made=17, now=CREATED) is None


def test_jitter_only_delays_and_never_passes_the_window():
    policy = RetryPolicy(jitter=0.1)

    for attempts_made in range(1, 17):
        plain = CREATED + dt.timedelta(seconds=policy.offset_seconds(attempts_made + 1))
        gap = policy.offset_seconds(attempts_made + 1) - policy.offset_seconds(attempts_made)
        for _ in range(50):
            at = policy.next_attempt_at(
                created_at=CREATED, attempts_made=attempts_made, now=CREATED
            )
            assert plain <= at <= plain + dt.timedelta(seconds=gap * 0.1)
            assert at <= policy.deadline(CREATED)


def test_a_late_attempt_still_waits_its_gap_before_the_next():
    policy = RetryPolicy(jitter=0)
    # Workers were down: attempt 3 ran 10 minutes after creation instead of 6 s.
    now = CREATED + dt.timedelta(minutes=10)

    assert policy.next_attempt_at(created_at=CREATED, attempts_made=3, now=now) == now + (
        dt.timedelta(seconds=8)
    )


def test_nothing_is_scheduled_after_the_window():
    policy = RetryPolicy(jitter=0)
    now = CREATED + dt.timedelta(hours=24, seconds=1)

    assert policy.next_attempt_at(created_at=CREATED, attempts_made=3, now=now) is None
    late = CREATED + dt.timedelta(hours=23, minutes=59, seconds=50)
    assert policy.next_attempt_at(created_at=CREATED, attempts_made=16, now=late) == (
        CREATED + dt.timedelta(hours=24)
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("99999999999999999999", 7 * 86400.0),
        ("9" * 5000, 7 * 86400.0),  # past the 4,300 digits int() reads; fits a header line
        ("0" * 5000 + "120", 120.0),
        ("\u00b2", None),  # a digit to isdigit(), not to int()
        ("Wed, 21 Oct 2099 07:28:00 GMT", 7 * 86400.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_values_are_read_safely(value, seconds):
    assert retry_after_seconds(value, now=CREATED) == seconds


def test_a_shrunk_schedule_keeps_its_shape():
    policy = RetryPolicy(base_seconds=0.2, max_attempts=5, window_seconds=3, jitter=0)

    assert [policy.offset_seconds(n) for n in range(1, 6)] == pytest.approx([0, 0.2, 0.6, 1.4, 3])


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        (ErrorKind.HTTP_STATUS, 500, True),
        (ErrorKind.HTTP_STATUS, 404, True),
        (ErrorKind.HTTP_STATUS, 410, False),
        (ErrorKind.TIMEOUT, None, True),
        (ErrorKind.CONNECTION, None, True),
        (ErrorKind.REDIRECT, 301, True),
        (ErrorKind.BLOCKED, None, False),
        (ErrorKind.INVALID_URL, None, False),
        (ErrorKind.DISABLED, None, False),
    ],
)
def test_which_failures_are_retried(kind, status, expected):
    assert is_retryable(error_kind=kind, status=status) is expected
