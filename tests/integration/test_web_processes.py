"""Four web processes, as a deployment runs them (gunicorn, gthread, the cache on Redis): the
limit on failed API authentications holds across them whatever X-Forwarded-For says, and the
OpenAPI description survives concurrent first requests on cold processes. (The admin login
counts in the same cache: tests/schools/test_admin_login.py.)"""

from __future__ import annotations

import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import pytest
import redis
import requests
from django.conf import settings

from schools.services import api_key_create
from tests.processes import ManagedProcess, process_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROCESSES = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _failure_counters_clear() -> None:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in client.scan_iter("*failures:*"):
        client.delete(key)


@pytest.fixture
def web_processes(process_logs):
    """Four gunicorn processes (one worker of 4 threads each) sharing the Redis cache."""
    _failure_counters_clear()
    ports = [_free_port() for _ in range(PROCESSES)]
    environment = process_env(
        DJANGO_CACHE_URL=settings.CELERY_BROKER_URL,  # this run's own Redis database
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_CONN_MAX_AGE="0",
    )
    servers = [
        ManagedProcess(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "webhooks_project.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--worker-class",
                "gthread",
                "--access-logfile",
                "-",
            ],
            environment,
            process_logs,
        )
        for port in ports
    ]
    try:
        for server in servers:
            server.wait_for_log("Booting worker", timeout=60)
        deadline = time.monotonic() + 60
        for port in ports:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    assert time.monotonic() < deadline, f"port {port} never opened"
                    time.sleep(0.1)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for server in servers:
            server.stop()
        _failure_counters_clear()


def test_four_processes_share_the_failure_limits_whatever_x_forwarded_for_says(
    web_processes, school
):
    _, valid_key = api_key_create(school=school, name="CRM")
    servers = cycle(web_processes)
    # Cold processes: the schema is generated on first use, 16 requests at once.
    with ThreadPoolExecutor(16) as pool:
        schemas = list(
            pool.map(
                lambda base: requests.get(f"{base}/api/schema/", timeout=60), 4 * web_processes
            )
        )

    statuses = []
    for number in range(30):
        response = requests.get(
            f"{next(servers)}/api/v1/subscriptions/",
            headers={
                "Authorization": f"Bearer whk_guess{number:04d}guessguessguessguessguessgue",
                "X-Forwarded-For": f"203.0.113.{number}",
            },
            timeout=10,
        )
        statuses.append(response.status_code)
    still_valid = requests.get(
        f"{next(servers)}/api/v1/subscriptions/",
        headers={"Authorization": f"Bearer {valid_key}"},
        timeout=10,
    )
    assert [response.status_code for response in schemas] == [200] * 16
    assert len({response.content for response in schemas}) == 1
    assert statuses == [401] * settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE + [429] * (
        30 - settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE
    )
    assert still_valid.status_code == 200
