from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from celery import current_app
from django.conf import settings

from tests.processes import ManagedProcess, start_worker


@pytest.fixture(autouse=True)
def _quiet_workers(quiet_workers_before_flush: None) -> None:
    """See ``quiet_workers_before_flush`` in tests/conftest.py."""


@pytest.fixture
def own_worker(process_logs) -> Iterator[Callable[..., ManagedProcess]]:
    """Start a worker with environment of its own, on a queue of its own: every task this test
    sends goes to it, none to the shared worker. Stopped when the test ends."""
    started: list[ManagedProcess] = []

    def start(**env: str) -> ManagedProcess:
        queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{uuid.uuid4().hex[:6]}"
        worker = start_worker(process_logs, CELERY_TASK_DEFAULT_QUEUE=queue, **env)
        started.append(worker)
        current_app.conf.task_default_queue = queue
        return worker

    default_queue = current_app.conf.task_default_queue
    try:
        yield start
    finally:
        current_app.conf.task_default_queue = default_queue
        for worker in started:
            worker.stop()
