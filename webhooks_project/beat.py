"""Beat's scheduler: django-celery-beat's, with its entries written one beat at a time.

At start-up each beat writes the schedule of ``CELERY_BEAT_SCHEDULE`` to the database, one
``PeriodicTask`` row per entry, looked up by name and created when missing. Two beats started
at the same moment (two hosts' units, an operator's mistake the engine otherwise tolerates:
its claims and sweeps are safe to run twice) could both find an entry missing; the second to
create it then failed django-celery-beat's own uniqueness check (``PeriodicTask.save`` calls
``validate_unique``, which raises a ``ValidationError``, not the ``IntegrityError`` that
``update_or_create`` expects of a lost race), and that beat logged a traceback for the entry.
Here each entry is written in a transaction that first takes an advisory lock every beat takes:
the second beat waits for the first's row, then finds it and updates it.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django_celery_beat.schedulers import DatabaseScheduler as _DatabaseScheduler
from django_celery_beat.schedulers import ModelEntry as _ModelEntry

# PostgreSQL's advisory lock taken while an entry is written (any int8 nothing else uses).
SCHEDULE_LOCK = 0x5748534348


class ModelEntry(_ModelEntry):
    @classmethod
    def from_entry(cls, name: str, app: Any = None, **entry: Any) -> ModelEntry:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULE_LOCK])
            return super().from_entry(name, app=app, **entry)  # type: ignore[no-any-return]


class DatabaseScheduler(_DatabaseScheduler):
    Entry = ModelEntry
