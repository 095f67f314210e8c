from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus
from events.models import Event


@pytest.fixture(autouse=True)
def quiet_workers_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let the shared worker finish this test's work before the tables are flushed.

    A transactional test's teardown truncates every table; a worker still retrying one of its
    deliveries would deadlock with that. Set up after ``transactional_db``, so torn down first.
    """
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # No further attempts or fan-outs: what is due stays put, what is in flight lands.
        Delivery.objects.filter(status=DeliveryStatus.PENDING, leased_until__isnull=True).update(
            status=DeliveryStatus.FAILED, next_attempt_at=None, enqueued_at=None
        )
        Event.objects.filter(fanned_out_at__isnull=True).update(fanned_out_at=timezone.now())
        busy = Delivery.objects.filter(status=DeliveryStatus.PENDING).exists()
        if not busy:
            time.sleep(0.3)  # a message taken just now finds nothing to claim
            if not Delivery.objects.filter(status=DeliveryStatus.PENDING).exists():
                return
        time.sleep(0.1)
