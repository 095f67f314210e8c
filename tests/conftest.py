from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings
from django.core.cache import caches
from django.utils import timezone, translation

from events.services import event_types_sync
from tests.broker import Queue, sending_to
from tests.network import GUARD
from tests.processes import ManagedProcess, start_worker
from tests.receiver import Receiver
from tests.resolver import FakeResolver
from tests.schools.factories import SchoolFactory


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's metric directory (tests/settings.py) goes when the run ends, after its workers;
    in a parallel run, each process's own and the (empty) one of the process that started them."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if Path(directory).name.startswith("webhooks-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def language_reset() -> Iterator[None]:
    """Every test starts with no active language, as a worker does. Django's LocaleMiddleware
    leaves a request's language active in the thread after the response, so a test that sent a
    French request would otherwise make the next test's messages French."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def lookups_cleared() -> Iterator[None]:
    """Each test starts without the per-process copies of schools and event types a rolled-back
    earlier test may have left (a row that no longer exists), and without the failure counters
    (API keys, admin logins) earlier tests ran up."""
    caches["lookups"].clear()
    caches["default"].clear()
    yield
    caches["lookups"].clear()


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


def _shared_worker_queue() -> str:
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}-shared"


@pytest.fixture(scope="session")
def worker_process(
    django_db_setup: None, django_db_blocker, process_logs: Path
) -> Iterator[ManagedProcess]:
    """One real Celery worker process (prefork, 2 children) on this run's database, shared by
    the tests that ask for it. It consumes a queue of its own, which only those tests send to
    (``shared_worker_queue``): once started it keeps running, and the tests that publish
    without a worker must find their events and deliveries where they left them."""
    with django_db_blocker.unblock():
        worker = start_worker(process_logs, CELERY_TASK_DEFAULT_QUEUE=_shared_worker_queue())
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def shared_worker_queue(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that uses the shared worker sends its tasks to that worker's queue; every other
    test sends to the run's queue, which only the workers such tests start themselves consume."""
    if "worker_process" not in request.fixturenames:
        yield
        return
    default_queue = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = _shared_worker_queue()
    try:
        yield
    finally:
        current_app.conf.task_default_queue = default_queue


@pytest.fixture
def own_queue() -> Iterator[Queue]:
    """Every task the test sends goes to a queue of its own, which no worker reads; its
    delivery messages are read back by priority with ``deliveries()``."""
    queue = Queue()
    try:
        with sending_to(queue.name):
            yield queue
    finally:
        queue.delete()


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


@pytest.fixture
def quiet_workers_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let the shared worker finish this test's work before the tables are flushed.

    A transactional test's teardown truncates every table; a worker still retrying one of its
    deliveries would deadlock with that. Set up after ``transactional_db``, so torn down first.
    Used (autouse) by the tests that share the worker: tests/integration and tests/e2e.
    """
    from deliveries.models import Delivery, DeliveryStatus
    from events.models import Event

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


# --- Admin users ------------------------------------------------------------------------------

ADMIN_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def admin_groups(db: None) -> None:
    """The "School admins" and "Support" groups (transactional tests flush what the migration
    created)."""
    from schools.services import admin_groups_sync

    admin_groups_sync()


@pytest.fixture
def school_admin(school, admin_groups, django_user_model):
    """Ada, admin of the ``school`` fixture (staff, "School admins" group, membership)."""
    from schools.services import school_admin_grant

    user = django_user_model.objects.create_user("ada", "ada@lycee.example.org", ADMIN_PASSWORD)
    school_admin_grant(user=user, school=school)
    return user


@pytest.fixture
def other_school(catalog: None):
    return SchoolFactory(slug="college-jean-moulin", name="Collège Jean Moulin")


@pytest.fixture
def other_school_admin(other_school, admin_groups, django_user_model):
    """Bob, admin of ``other_school`` only."""
    from schools.services import school_admin_grant

    user = django_user_model.objects.create_user("bob", "bob@moulin.example.org", ADMIN_PASSWORD)
    school_admin_grant(user=user, school=other_school)
    return user


@pytest.fixture
def support_user(admin_groups, django_user_model):
    """Sam, platform support staff: sees every school, cannot read secrets."""
    from schools.services import support_staff_grant

    user = django_user_model.objects.create_user("sam", "sam@platform.example.org", ADMIN_PASSWORD)
    support_staff_grant(user=user)
    return user


# --- The admin's language -----------------------------------------------------------------------


@pytest.fixture
def client():
    """Django's test client as an English-speaking browser: the schools of the tests speak
    French, which the admin would otherwise fall back to (tests/test_i18n.py covers that)."""
    from django.test import Client

    return Client(HTTP_ACCEPT_LANGUAGE="en")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client
