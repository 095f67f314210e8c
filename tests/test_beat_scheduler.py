"""Beat's scheduler (webhooks_project/beat.py): two beats started at once write each entry of the
schedule one after the other, never both creating it."""

import threading
import time

import psycopg
import pytest
from celery import current_app
from django.conf import settings
from django.db import connection
from django_celery_beat.models import PeriodicTask

from webhooks_project.beat import SCHEDULE_LOCK, DatabaseScheduler


def _beat_starting(errors, barrier=None):
    """A thread that starts a beat's scheduler (it writes the schedule), noting any error."""

    def start_beat():
        try:
            if barrier is not None:
                barrier.wait(5)
            DatabaseScheduler(app=current_app)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    beat = threading.Thread(target=start_beat)
    beat.start()
    return beat


def _other_beat_writing():
    """A session holding the lock a beat holds while it writes an entry."""
    dsn = connection.settings_dict
    other = psycopg.connect(
        host=dsn["HOST"], port=dsn["PORT"] or 5432, user=dsn["USER"], dbname=dsn["NAME"]
    )
    other.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULE_LOCK])
    return other


@pytest.mark.django_db(transaction=True)
def test_a_beat_waits_to_write_its_schedule_while_another_beat_writes_an_entry():
    assert settings.CELERY_BEAT_SCHEDULER == "webhooks_project.beat:DatabaseScheduler"
    other = _other_beat_writing()
    errors = []
    beat = _beat_starting(errors)
    try:
        time.sleep(1.0)
        assert beat.is_alive(), "the beat wrote its schedule while another beat held the lock"
        assert not PeriodicTask.objects.filter(name__in=settings.CELERY_BEAT_SCHEDULE).exists()
    finally:
        other.rollback()  # the other beat's entry is written: its lock goes with its commit
        other.close()
        beat.join(30)
    assert not beat.is_alive()
    assert not errors
    names = list(PeriodicTask.objects.values_list("name", flat=True))
    assert sorted(name for name in names if name in settings.CELERY_BEAT_SCHEDULE) == sorted(
        settings.CELERY_BEAT_SCHEDULE
    )


@pytest.mark.django_db(transaction=True)
def test_two_beats_starting_together_write_each_entry_once_without_an_error(caplog):
    barrier = threading.Barrier(2)
    errors = []
    beats = [_beat_starting(errors, barrier) for _ in range(2)]
    for beat in beats:
        beat.join(30)
    assert not errors
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    for name in settings.CELERY_BEAT_SCHEDULE:
        assert PeriodicTask.objects.filter(name=name).count() == 1
