"""Export of a filtered delivery log as CSV or JSON, streamed, for a school's IT team.

The caller passes the list as its reader sees it (scoped to their schools, filtered); rows are
read in chunks from a server-side cursor and written as they come, so an export of a million
rows holds a chunk in memory, not the log. What an export never holds: request headers, the
body, basic-auth credentials, a URL's query values (masked as the log masks them for support
staff: ``?token=…``) or its user-info, and any of the webhook's secret values or custom header
values in the last error (scrubbed, for every reader: the file leaves the product). CSV cells
that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return
first) are prefixed with ``'`` (OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from common.admin_display import zone_get
from subscriptions.models import Subscription
from subscriptions.selectors import subscription_hidden_values

from .display import text_scrub, url_query_mask
from .models import Delivery, delivery_state

EXPORT_FORMATS = ("csv", "json")

# The columns, in order: the CSV header and the JSON keys.
COLUMNS = [
    "id",
    "school",
    "webhook_id",
    "webhook_name",
    "webhook_url",
    "event_id",
    "event_type",
    "state",
    "is_test",
    "replay_number",
    "attempts",
    "created_at",
    "last_attempt_at",
    "last_response_status",
    "last_error_kind",
    "last_error",
    "delivered_at",
]

_FIELDS = [
    "id",
    "school__slug",
    "school__timezone",
    "subscription_id",
    "event_id",
    "event_type",
    "status",
    "is_test",
    "replay_number",
    "attempts",
    "created_at",
    "last_attempt_at",
    "last_response_status",
    "last_error_kind",
    "last_error",
    "delivered_at",
]

_CHUNK = 2000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def url_export(url: str) -> str:
    """The URL as an export shows it: query values masked, no user-info."""
    parts = urlsplit(url_query_mask(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def cell_neutralise(value: str) -> str:
    """A text cell a spreadsheet shows as text, never runs as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def deliveries_export_rows(queryset: QuerySet[Delivery]) -> Iterator[dict[str, Any]]:
    """One dict per delivery of ``queryset`` (in its order), keyed by ``COLUMNS``, secrets out.

    Times are ISO 8601 in the school's time zone, with its offset. Each webhook's name, URL and
    secret values are read once.
    """
    webhooks: dict[uuid.UUID, tuple[str, str, list[str]]] = {}
    rows = queryset.values_list(*_FIELDS).iterator(chunk_size=_CHUNK)
    for (
        pk,
        school_slug,
        zone_name,
        subscription_id,
        event_id,
        event_type,
        status,
        is_test,
        replay_number,
        attempts,
        created_at,
        last_attempt_at,
        last_response_status,
        last_error_kind,
        last_error,
        delivered_at,
    ) in rows:
        if subscription_id not in webhooks:
            webhook = Subscription.objects.filter(pk=subscription_id).first()
            # Deleted while the file streams: its rows go out without its name and URL.
            webhooks[subscription_id] = (
                ("", "", [])
                if webhook is None
                else (
                    webhook.name,
                    url_export(webhook.url),
                    subscription_hidden_values(subscription=webhook),
                )
            )
        name, url, hidden = webhooks[subscription_id]
        zone = zone_get(zone_name)
        yield {
            "id": str(pk),
            "school": school_slug,
            "webhook_id": str(subscription_id),
            "webhook_name": name,
            "webhook_url": url,
            "event_id": str(event_id),
            "event_type": event_type,
            "state": delivery_state(status, last_error_kind).value,
            "is_test": is_test,
            "replay_number": replay_number,
            "attempts": attempts,
            "created_at": _in_zone(created_at, zone),
            "last_attempt_at": _in_zone(last_attempt_at, zone),
            "last_response_status": last_response_status,
            "last_error_kind": last_error_kind,
            "last_error": text_scrub(last_error, hidden),
            "delivered_at": _in_zone(delivered_at, zone),
        }


def _in_zone(value: dt.datetime | None, zone: dt.tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat()


def _csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[Any]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(COLUMNS)
    for row in rows:
        yield line([_csv_cell(row[column]) for column in COLUMNS])


def _csv_cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return cell_neutralise(value) if isinstance(value, str) else value


def _json_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    separator = "\n"
    for row in rows:
        yield separator + json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


def deliveries_export_response(
    queryset: QuerySet[Delivery], *, export_format: str, name: str = "deliveries"
) -> StreamingHttpResponse:
    """A streamed download of ``queryset`` as ``csv`` or ``json`` (an array of objects)."""
    rows = deliveries_export_rows(queryset)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if export_format == "csv":
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            _json_chunks(rows), content_type="application/json; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{export_format}"'
    response["Cache-Control"] = "no-store"
    return response
