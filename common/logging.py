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


class BrokerOutageFilter(logging.Filter):
    """Celery beat's ``Message Error`` while the broker cannot be reached (a Redis restart or
    outage): one line with the cause, instead of the stack and the traceback Celery logs with
    each tick it could not send (about 150 lines a second). Other errors are left whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and str(record.msg).startswith("Message Error")
            and _broker_unreachable(record.exc_info[1])
        ):
            record.msg = "Message Error: %s"
            record.args = (record.exc_info[1],)
            record.exc_info = None
            record.exc_text = None
        return True


def _broker_unreachable(exc: BaseException | None) -> bool:
    """Whether an exception was caused by a connection to the broker failing."""
    from kombu.exceptions import OperationalError

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OperationalError | ConnectionError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
