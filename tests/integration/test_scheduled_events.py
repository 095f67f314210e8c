"""Scheduled and daily events with real processes: two beats, two workers, one private queue."""

import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from events.models import Event, ScheduledEvent, ScheduledEventStatus
from events.schedule import daily_run_latest
from events.services import (
    daily_event_schedule,
    scheduled_event_cancel,
    scheduled_event_create,
    scheduled_event_move,
)
from faults.harness import PrivatePostgres, PrivateRedis
from tests.processes import ROOT, process_env, start_beat, start_worker
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MAX_LATENESS = dt.timedelta(seconds=5)


@contextlib.contextmanager
def _running(process_logs, **env):
    """Two workers and two beats on a queue of their own, started side by side, beat tasks
    ticking every second; all stopped on the way out."""
    env = {
        "CELERY_TASK_DEFAULT_QUEUE": f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{uuid.uuid4().hex[:6]}",
        "WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS": "1",
        "WEBHOOKS_DAILY_EVENTS_INTERVAL_SECONDS": "1",
        **env,
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        starting = [pool.submit(start_worker, process_logs, **env) for _ in range(2)]
        starting += [pool.submit(start_beat, process_logs, **env) for _ in range(2)]
    started = [future.result() for future in starting if future.exception() is None]
    try:
        for future in starting:
            future.result()  # re-raise a failed start, after the others are in `started`
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def _wait(predicate, timeout=30.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {message}")


def _course(course_id):
    return {"course": {"id": course_id, "name": f"Course {course_id}"}}


def test_two_beats_and_two_workers_send_each_scheduled_and_daily_event_once_on_time(
    catalog, process_logs, receiver
):
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/courses"), topics=["course.*"])
    with _running(process_logs):
        now = timezone.now()
        due = now + dt.timedelta(seconds=4)
        # Eight course starts due together, one course moved later, one called off.
        on_time = [
            scheduled_event_create(
                school=school, type="course.started", data=_course(f"c{n}"), due_at=due, key=f"c{n}"
            )
            for n in range(8)
        ]
        moved = scheduled_event_create(
            school=school, type="course.started", data=_course("moved"), due_at=due, key="moved"
        )
        cancelled = scheduled_event_create(
            school=school, type="course.started", data=_course("off"), due_at=due, key="off"
        )
        new_time = due + dt.timedelta(seconds=3)
        scheduled_event_move(scheduled_event=moved, due_at=new_time)
        scheduled_event_cancel(scheduled_event=cancelled)
        # A school whose local daily time comes at the same moment.
        tokyo = ZoneInfo("Asia/Tokyo")
        at = due.astimezone(tokyo).time().replace(microsecond=0)
        daily = SchoolFactory(timezone="Asia/Tokyo", daily_event_time=at, created_at=now)
        daily_due = daily_run_latest(due, at, tokyo)
        # A school on the 00:07 UTC default whose scheduler was down: its last run days ago.
        three_days_ago = now - dt.timedelta(days=3)
        missed = SchoolFactory(created_at=now - dt.timedelta(days=10))
        Event.objects.create(
            school=missed,
            type_id="cron.midnight",
            data={},
            occurred_at=three_days_ago,
            idempotency_key=f"cron.midnight:{three_days_ago.date().isoformat()}",
        )
        missed_due = daily_run_latest(now, *daily_event_schedule(school=missed))

        _wait(
            lambda: (
                len(receiver.received("/courses")) >= 9
                and Event.objects.filter(school=daily).exists()
                and Event.objects.filter(school=missed).count() >= 2
            ),
            message="the course events, the daily event and the catch-up",
        )
        time.sleep(2.5)  # both beats tick again and again: nothing may go out twice

    for scheduled in on_time:
        row = ScheduledEvent.objects.select_related("event").get(pk=scheduled.pk)
        assert row.status == ScheduledEventStatus.PUBLISHED
        assert row.event.occurred_at == due
        assert dt.timedelta(0) <= row.event.created_at - due <= MAX_LATENESS
    moved_row = ScheduledEvent.objects.select_related("event").get(pk=moved.pk)
    assert moved_row.event.occurred_at == new_time
    assert dt.timedelta(0) <= moved_row.event.created_at - new_time <= MAX_LATENESS
    assert ScheduledEvent.objects.get(pk=cancelled.pk).status == ScheduledEventStatus.CANCELLED
    assert Event.objects.filter(school=school).count() == 9
    delivered = sorted(
        json.loads(request.body)["data"]["course"]["id"] for request in receiver.received()
    )
    assert delivered == sorted([f"c{n}" for n in range(8)] + ["moved"])  # each exactly once

    [today] = Event.objects.filter(school=daily)
    assert (today.type_id, today.occurred_at) == ("cron.midnight", daily_due.due_at)
    assert today.data == {
        "date": daily_due.day.isoformat(),
        "scheduled_for": daily_due.due_at.isoformat(),
    }
    assert dt.timedelta(0) <= today.created_at - daily_due.due_at <= MAX_LATENESS
    [caught_up] = Event.objects.filter(school=missed, occurred_at__gt=three_days_ago)
    assert caught_up.occurred_at == missed_due.due_at
    assert caught_up.idempotency_key == f"cron.midnight:{missed_due.day.isoformat()}"
    # The course school was created moments ago: no daily event for a run before it existed.
    assert Event.objects.filter(school=school, type="cron.midnight").count() == 0


def test_beat_ticks_no_worker_took_expire_instead_of_piling_up(catalog, process_logs):
    # Given beat ticking every second on a queue no worker reads (workers down, say)
    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    beat = start_beat(
        process_logs,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS="1",
        WEBHOOKS_DAILY_EVENTS_INTERVAL_SECONDS="1",
    )
    try:
        # When it has sent each of its periodic tasks a few times
        _wait(lambda: client.llen(queue) >= 6, message="beat's messages")
    finally:
        beat.stop()
        messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
        client.delete(queue)

    # Then every message carries an expiry: a worker that comes back after an hour runs the
    # next tick, not the 3,600 ticks beat sent meanwhile
    expiries = {message["headers"]["task"]: message["headers"]["expires"] for message in messages}
    assert {"events.scheduled_events_publish_due", "events.daily_events_publish_due"} <= set(
        expiries
    )
    for task, expires in expiries.items():
        assert expires is not None, task
        assert dt.datetime.fromisoformat(expires) - timezone.now() <= dt.timedelta(seconds=60)


def test_beat_says_in_one_line_per_tick_that_the_broker_is_unreachable(catalog, process_logs):
    """Redis restarted or gone while beat runs: beat cannot send its ticks. Celery logs each
    failure with the stack and the traceback, about 150 lines a second; one line per tick says
    as much."""
    broker = PrivateRedis()
    broker.start()
    try:
        beat = start_beat(
            process_logs,
            CELERY_BROKER_URL=broker.url,
            CELERY_BROKER_SOCKET_TIMEOUT="1.5",
            WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS="1",
        )
        try:
            deadline = time.monotonic() + 30
            while "Sending due task" not in beat.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            broker.kill()
            while beat.log().count("Message Error") < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            # What beat said while running (a SIGTERM handled inside a finaliser prints the
            # SystemExit that Python ignores: test_operations covers that beat stops anyway)
            log = beat.log()
        finally:
            beat.stop()
    finally:
        broker.kill()

    errors = [line for line in log.splitlines() if "Message Error" in line]
    assert len(errors) >= 3, log[-3000:]
    assert "Connection refused" in errors[-1], errors[-1]
    assert "Traceback" not in log, log[-3000:]
    assert 'File "' not in log, log[-3000:]


def test_beat_says_in_one_line_each_time_that_the_database_is_unreachable(catalog, process_logs):
    """PostgreSQL restarted or gone while beat runs: its scheduler and its heartbeat log each
    failure with a traceback, about 280 lines a second; one line each says as much."""
    database = PrivatePostgres()
    try:
        database.start()
        database.create_database()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=process_env(DATABASE_URL=database.url),
            check=True,
        )
        # A heartbeat at most every second: the first failed one comes soon after the stop
        beat = start_beat(process_logs, DATABASE_URL=database.url, WEBHOOKS_HEARTBEAT_SECONDS="1")
        try:
            deadline = time.monotonic() + 30
            while "Sending due task" not in beat.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            database.stop()
            deadline = time.monotonic() + 30
            while (
                not ("Database gave error" in beat.log() and "heartbeat not recorded" in beat.log())
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            log = beat.log()  # what beat said while running, as above
        finally:
            beat.stop()
    finally:
        database.remove()

    [scheduler, *_] = [line for line in log.splitlines() if "Database gave error" in line]
    [heartbeat, *_] = [line for line in log.splitlines() if "heartbeat not recorded" in line]
    # The database's reason, whichever its stop gave at that moment: refused once it is gone,
    # or the stop's own words to a connection made while it was stopping.
    reasons = ("Connection refused", "shutting down", "terminating connection")
    assert any(reason in scheduler for reason in reasons), scheduler
    assert "OperationalError" in heartbeat, heartbeat
    assert "Traceback" not in log, log[-3000:]
    assert 'File "' not in log, log[-3000:]
