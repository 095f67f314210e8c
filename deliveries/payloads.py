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

import xmltodict

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


_XML_NAME_START = re.compile(r"^[A-Za-z_]")
_XML_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.-]")


def _xml_name(key: str) -> str:
    """``key`` as a valid XML element name: invalid characters become ``_``, and a name that
    cannot start an element (a digit, ``@``, ``#``) gets a leading ``_``."""
    name = _XML_NAME_INVALID.sub("_", key)
    return name if _XML_NAME_START.match(name) else f"_{name}"


def _xml_tree(value: Any) -> Any:
    """A JSON value shaped for xmltodict: a list is the element repeated, a list inside a list is
    wrapped in ``<item>`` elements, booleans are ``true``/``false``, null is an empty element."""
    if isinstance(value, dict):
        return {_xml_name(key): _xml_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [
            {"item": _xml_tree(item)} if isinstance(item, list) else _xml_tree(item)
            for item in value
        ]
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def render_xml(envelope: dict[str, Any]) -> bytes:
    """UTF-8 XML: the same tree as the JSON under a ``<webhook>`` root."""
    return xmltodict.unparse(
        {"webhook": _xml_tree(envelope)}, encoding="utf-8", short_empty_elements=True
    ).encode()


CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
}

_RENDERERS = {"json": render_json, "xml": render_xml}


def render(envelope: dict[str, Any], content_type: str) -> tuple[bytes, str]:
    """The body bytes and the ``Content-Type`` header value for a subscription's content type."""
    renderer = _RENDERERS.get(content_type)
    if renderer is None:
        raise ValueError(f"Unsupported content type {content_type!r}")
    return renderer(envelope), CONTENT_TYPES[content_type]
