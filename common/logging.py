"""Log records as JSON, one object per line (``WEBHOOKS_LOG_FORMAT=json``).

Each line holds ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``, then every field the caller passed with ``extra=`` under its own name (the
delivery attempt lines put ``delivery_id``, ``webhook_id``, ``school``, ... there), then
``exception`` with the traceback when there is one. Values JSON cannot hold are written as
their ``str()``. The formatter adds nothing a caller did not log: it is the callers' duty not
to log secrets, and the attempt lines carry identifiers and outcomes only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A ``logging.Formatter`` that writes each record as one line of JSON (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class OutageFilter(logging.Filter):
    """A failure caused by the broker, the database or the cache being unreachable (a restart,
    an outage) is logged in one line that says why, without the traceback (and, for Celery
    beat's ``Message Error``, the stack) the logger added. Beat's scheduler, its ticks and the
    heartbeats log one at every turn, the web one per publish or failed login: hundreds of
    lines a second for as long as it lasts. Other errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _outage(record.exc_info[1]):
            exc = record.exc_info[1]
            try:
                message = record.getMessage().split("\n")[0].rstrip()
            except Exception:  # a message its arguments do not fit: left for the handler
                return True
            lines = str(exc).strip().splitlines()
            if not lines or lines[0] not in message:  # say why, once
                message = f"{message}: {type(exc).__name__}: {lines[0] if lines else ''}"
            record.msg = message
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _outage(exc: BaseException | None) -> bool:
    """Whether an exception was caused by a connection to the broker, the database or the
    cache failing (the cache's Redis client raises from the builtin ``ConnectionError``)."""
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as BrokerError

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, BrokerError | ConnectionError | OperationalError | InterfaceError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class RoutineTickFilter(logging.Filter):
    """Beat's frequent ticks (``tasks``: the sweeper every 2 s, scheduled events every second,
    the daily event every 30 s) are logged once per process as they go well: beat sending one,
    a worker receiving it, the task succeeding. Every later one said nothing new, about five
    lines a second for as long as the processes run, and buried what did say something
    (`make run`'s login within a second of being printed). A tick that fails or is retried is
    logged every time, as is every other task."""

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

        super().__init__()
        self.tasks = frozenset(tasks)
        # What Celery's worker and beat write for a tick that goes well.
        self.messages = frozenset({LOG_RECEIVED, LOG_SUCCESS, _BEAT_SENDING})
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.msg not in self.messages:
            return True
        args = record.args
        if isinstance(args, Mapping):
            task = args.get("name")
        else:
            task = args[1] if isinstance(args, tuple) and len(args) == 2 else None
        if task not in self.tasks:
            return True
        seen = (record.msg, task)
        if seen in self._seen:
            return False
        self._seen.add(seen)
        return True


# celery.beat.Scheduler.apply_entry's line, with the entry's name and its task's.
_BEAT_SENDING = "Scheduler: Sending due task %s (%s)"
