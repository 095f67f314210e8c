from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.services import event_types_sync
from tests.network import GUARD
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
def connects() -> Iterator[list[str]]:
    """Every address this test connects to (only loopback is ever allowed: tests/network.py)."""
    GUARD.addresses = []
    GUARD.recording = True
    yield GUARD.addresses
    GUARD.recording = False


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


@pytest.fixture
def school_key(school) -> str:
    """An API key of the ``school`` fixture."""
    from schools.services import api_key_create

    return api_key_create(school=school, name="Tests")[1]


@pytest.fixture
def platform_key(db: None) -> str:
    from schools.services import platform_key_create

    return platform_key_create(name="Platform tests")[1]


@pytest.fixture
def api(school_key):
    """A DRF client authenticated with the school's API key."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {school_key}")
    return client


@pytest.fixture
def platform_api(platform_key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {platform_key}")
    return client
