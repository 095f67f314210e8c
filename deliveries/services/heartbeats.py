"""Heartbeats: beat, the sweeper and each worker note that they are alive (read by /metrics)."""

from __future__ import annotations

import datetime as dt

from common.clock import db_now

from ..models import Heartbeat

BEAT = Heartbeat.BEAT
SWEEPER = Heartbeat.SWEEPER
WORKER_PREFIX = Heartbeat.WORKER_PREFIX
# A worker row not refreshed for this long belongs to a host that is gone; it is deleted.
FORGET_AFTER = dt.timedelta(days=1)


def heartbeat_record(*, name: str, now: dt.datetime | None = None) -> None:
    """Note that ``name`` is alive now: one upsert of its row. Idempotent.

    The sweeper's heartbeat also forgets workers not seen for a day (hosts that went away
    without stopping cleanly), so the table stays as small as the fleet.
    """
    now = now or db_now()
    Heartbeat.objects.bulk_create(
        [Heartbeat(name=name, seen_at=now)],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["seen_at"],
    )
    if name == SWEEPER:
        Heartbeat.objects.filter(
            name__startswith=WORKER_PREFIX, seen_at__lt=now - FORGET_AFTER
        ).delete()


def heartbeat_remove(*, name: str) -> None:
    """Forget ``name`` (a worker that stops cleanly); nothing happens if it has no row."""
    Heartbeat.objects.filter(name=name).delete()
