"""The same Idempotency-Key from several requests at once (a platform whose job runs twice, a
retry sent while the first request is still in flight): one event, and one answer that made it."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from events.models import Event, EventType, ScheduledEvent

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 4


def _at_once(platform_key: str, path: str, body: dict[str, Any]) -> list[tuple[int, dict]]:
    """``REQUESTS`` requests with the same body and Idempotency-Key, each on its own database
    connection, let go together; their answers."""
    start = threading.Barrier(REQUESTS)
    answers: list[tuple[int, dict]] = []

    def one() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {platform_key}")
            start.wait(10)
            response = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="job-4711")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == REQUESTS
    return answers


def test_publishing_with_one_key_from_several_requests_at_once_says_which_one_published(
    platform_key, school
):
    body = {"school": school.slug, "type": "course.created", "data": {"course": {"id": "c-42"}}}

    answers = _at_once(platform_key, "/api/v1/events/", body)

    # One event; every request answers it, and exactly one says it published it
    assert Event.objects.filter(school=school).count() == 1
    assert {status for status, _body in answers} == {202}
    assert {answer["id"] for _status, answer in answers} == {
        str(Event.objects.get(school=school).id)
    }
    assert sorted(answer["replayed"] for _status, answer in answers) == [False, True, True, True]


def test_scheduling_with_one_key_from_several_requests_at_once_creates_it_once(
    platform_key, school
):
    body = {
        "school": school.slug,
        "type": "course.started",
        "data": EventType.objects.get(key="course.started").sample_payload,
        "due_at": (timezone.now() + dt.timedelta(hours=1)).isoformat(),
    }

    answers = _at_once(platform_key, "/api/v1/scheduled-events/", body)

    # One scheduled event: one 201 Created, the others 200 with the same one
    assert ScheduledEvent.objects.filter(school=school).count() == 1
    assert sorted(status for status, _body in answers) == [200, 200, 200, 201]
    assert len({answer["id"] for _status, answer in answers}) == 1
