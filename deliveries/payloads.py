"""Building and rendering the body a receiver gets. Pure functions, no database access.

The default envelope (DESIGN.md, "Delivery contract")::

    {"id": <event id>, "type": "course.created", "school": {"id": 1, "slug": "..."},
     "timestamp": <occurred_at in the school's zone>, "data": {...}}

Every ISO-8601 datetime with an offset inside ``data`` is re-expressed in the school's time zone,
so receivers never convert (Edusign's "dates in the school's time zone").
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

_AWARE_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
)


def datetime_localize(value: dt.datetime, tz: ZoneInfo) -> str:
    """ISO-8601 in ``tz`` with its UTC offset at that instant (DST-correct)."""
    return value.astimezone(tz).isoformat()


def datetimes_localize(value: Any, tz: ZoneInfo) -> Any:
    """A copy of a JSON value with every aware ISO-8601 datetime string moved into ``tz``."""
    if isinstance(value, str):
        if _AWARE_DATETIME.match(value):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                return value
            return datetime_localize(parsed, tz)
        return value
    if isinstance(value, dict):
        return {key: datetimes_localize(item, tz) for key, item in value.items()}
    if isinstance(value, list):
        return [datetimes_localize(item, tz) for item in value]
    return value


def envelope_build(
    *,
    event_id: str,
    event_type: str,
    school_id: int,
    school_slug: str,
    occurred_at: dt.datetime,
    data: dict[str, Any],
    tz: ZoneInfo,
) -> dict[str, Any]:
    """The default envelope of one event for one school."""
    return {
        "id": event_id,
        "type": event_type,
        "school": {"id": school_id, "slug": school_slug},
        "timestamp": datetime_localize(occurred_at, tz),
        "data": datetimes_localize(data, tz),
    }


def render_json(envelope: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


CONTENT_TYPES = {
    "json": "application/json",
}


def render(envelope: dict[str, Any], content_type: str) -> tuple[bytes, str]:
    """The body bytes and the ``Content-Type`` header value for a subscription's content type."""
    if content_type == "json":
        return render_json(envelope), CONTENT_TYPES["json"]
    raise ValueError(f"Unsupported content type {content_type!r}")
