from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.services import event_types_sync
from tests.processes import ManagedProcess, start_worker
from tests.receiver import Receiver
from tests.resolver import FakeResolver
from tests.schools.factories import SchoolFactory


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
    """No test resolves a real name: see tests/resolver.py."""
    fake = FakeResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture
def catalog(db: None) -> None:
    """The shipped event catalog (transactional tests flush what the migration loaded)."""
    event_types_sync()


@pytest.fixture
def school(catalog: None):
    return SchoolFactory(slug="lycee-victor-hugo", name="Lycée Victor Hugo")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def worker_process(
    django_db_setup: None, django_db_blocker, process_logs: Path
) -> Iterator[ManagedProcess]:
    """One real Celery worker process (prefork, 2 children) on this run's queue and database."""
    with django_db_blocker.unblock():
        worker = start_worker(process_logs)
    yield worker
    worker.stop()
