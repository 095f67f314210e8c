from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import current_app
from django.conf import settings

from tests.processes import ManagedProcess, start_beat, start_worker, start_workers


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


class Hosts:
    """Worker and beat processes of one test, as on several hosts: each worker a prefork pool
    of 2 under a hostname of its own, all on one queue of the test's own (every task the test
    sends goes there). Stopped when the test ends."""

    def __init__(self, log_dir) -> None:
        self.log_dir = log_dir
        self.queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-hosts-{uuid.uuid4().hex[:6]}"
        self.started: list[ManagedProcess] = []

    def workers(self, count: int, **env: str) -> list[ManagedProcess]:
        workers = start_workers(self.log_dir, count, CELERY_TASK_DEFAULT_QUEUE=self.queue, **env)
        self.started += workers
        return workers

    def beat(self, **env: str) -> ManagedProcess:
        return self.beats(1, **env)[0]

    def beats(self, count: int, **env: str) -> list[ManagedProcess]:
        """``count`` beats, started side by side (more than one is an operator's mistake)."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            starting = [
                pool.submit(start_beat, self.log_dir, CELERY_TASK_DEFAULT_QUEUE=self.queue, **env)
                for _ in range(count)
            ]
        self.started += [future.result() for future in starting if future.exception() is None]
        return [future.result() for future in starting]


@pytest.fixture
def hosts(process_logs) -> Iterator[Hosts]:
    started = Hosts(process_logs)
    default_queue = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = started.queue
    try:
        yield started
    finally:
        current_app.conf.task_default_queue = default_queue
        for process in started.started:  # all at once: each waits for its own work
            process.terminate()
        for process in started.started:
            process.stop()
