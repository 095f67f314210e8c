"""Reads of the events app."""

from __future__ import annotations

import datetime as dt
import uuid

from .models import Event


def events_awaiting_fan_out(*, created_before: dt.datetime, limit: int) -> list[uuid.UUID]:
    """Ids of events created before ``created_before`` that were never fanned out, oldest first."""
    return list(
        Event.objects.filter(fanned_out_at__isnull=True, created_at__lt=created_before)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
