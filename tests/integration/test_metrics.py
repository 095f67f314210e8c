"""GET /metrics after real deliveries by real worker processes, and a worker's own metrics port."""

import re
import socket
import time
import urllib.error
import urllib.request

import pytest
from django.db import transaction
from prometheus_client.parser import text_string_to_metric_families

from deliveries.models import Delivery, DeliveryStatus, Heartbeat
from deliveries.services import deliveries_sweep
from events.services import event_publish
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "a-metrics-token-only-for-tests"


def _samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return _samples(response.content.decode())


def _publish(school):
    with transaction.atomic():
        return event_publish(school=school, type="course.created", data={"course": {"id": "c-1"}})


def _wait(predicate, timeout=20.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {message}")


def _all_final(queryset):
    rows = list(queryset)
    return rows if rows and all(r.status != DeliveryStatus.PENDING for r in rows) else None


ATTEMPTS = "webhooks_delivery_attempts_total"
DELIVERED = {"trigger": "automatic", "outcome": "delivered", "error_kind": "none"}
RETRYING = {"trigger": "automatic", "outcome": "retrying", "error_kind": "http_status"}


def test_metrics_count_exactly_the_attempts_a_real_worker_made(
    worker_process, catalog, receiver, client, settings
):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/ok"), topics=["*"])
    SubscriptionFactory(school=school, url=receiver.url("/flaky"), topics=["*"])
    receiver.script("/flaky", Reply(status=503))  # the first request fails, the rest succeed
    before = _scrape(client)

    events = [_publish(school) for _ in range(3)]
    rows = _wait(
        lambda: _all_final(Delivery.objects.filter(event__in=events)), message="deliveries"
    )

    expected = {
        (ATTEMPTS, tuple(sorted(DELIVERED.items()))): 6,
        (ATTEMPTS, tuple(sorted(RETRYING.items()))): 1,
        ("webhooks_delivery_attempt_duration_seconds_count", (("outcome", "delivered"),)): 6,
        ("webhooks_delivery_attempt_duration_seconds_count", (("outcome", "retrying"),)): 1,
        ("webhooks_delivery_first_attempt_delay_seconds_count", ()): 6,
        ("webhooks_event_fan_out_delay_seconds_count", ()): 3,
    }

    def moved():
        # The worker counts an attempt right after its result is committed: wait for it.
        after = _scrape(client)
        changes = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in expected}
        return (after, changes) if changes == expected else None

    after, _ = _wait(moved, timeout=10, message=f"the counters to move by {expected}")
    assert [row.status for row in rows] == [DeliveryStatus.DELIVERED] * 6
    attempts_moved = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == ATTEMPTS and after[key] != before.get(key, 0.0)
    }
    assert attempts_moved == {key: n for key, n in expected.items() if key[0] == ATTEMPTS}
    assert _value(after, "webhooks_deliveries_due") == 0
    assert _value(after, "webhooks_events_awaiting_fan_out") == 0
    assert _value(after, "webhooks_webhooks", state="healthy") == 2
    assert _value(after, "webhooks_webhooks", state="failing") == 0
    # The histograms hold the durations the attempt log recorded.
    sum_ms = sum(a.duration_ms for row in rows for a in row.attempt_log.all() if a.error_kind == "")
    moved_sum = _value(
        after, "webhooks_delivery_attempt_duration_seconds_sum", outcome="delivered"
    ) - _value(before, "webhooks_delivery_attempt_duration_seconds_sum", outcome="delivered")
    assert moved_sum == pytest.approx(sum_ms / 1000, abs=1e-6)


def test_metrics_are_refused_without_the_token_or_with_another(worker_process, client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-metrics-token")

    assert (missing.status_code, missing.content) == (401, b"Unauthorized")
    assert (wrong.status_code, wrong.content) == (401, b"Unauthorized")


def test_worker_and_sweeper_liveness_come_from_their_heartbeats(worker_process, client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN

    # The shared worker notes it is alive every second (tests/settings.py).
    alive = _wait(
        lambda: _value(_scrape(client), "webhooks_workers_alive") or None,
        timeout=10,
        message="the worker's heartbeat",
    )
    deliveries_sweep()
    found = _scrape(client)

    assert alive >= 1
    assert 0 <= _value(found, "webhooks_sweeper_last_run_age_seconds") < 5


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_worker_serves_its_hosts_counters_on_its_own_port_behind_the_same_checks(
    own_worker, catalog, receiver, tmp_path
):
    port = _free_port()
    worker = own_worker(
        WEBHOOKS_WORKER_METRICS_PORT=str(port),
        WEBHOOKS_WORKER_METRICS_ADDRESS="127.0.0.1",
        WEBHOOKS_METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),  # this worker's files only
    )
    [hostname] = set(re.findall(r"(test-[0-9a-f]{8}@\S+)", worker.log()))
    school = SchoolFactory()
    SubscriptionFactory(school=school, url=receiver.url("/ok"), topics=["*"])
    url = f"http://127.0.0.1:{port}/metrics"

    event = _publish(school)
    _wait(lambda: _all_final(Delivery.objects.filter(event=event)), message="the delivery")

    def counted():
        status, text = _get(url, TOKEN)
        return text if status == 200 and _value(_samples(text), ATTEMPTS, **DELIVERED) else None

    text = _wait(counted, timeout=10, message="the worker's port to count the attempt")
    found = _samples(text)
    assert _value(found, ATTEMPTS, **DELIVERED) == 1
    assert sum(v for (name, _), v in found.items() if name == ATTEMPTS) == 1
    assert "webhooks_deliveries_due" not in text  # the database's state is the web's to serve
    assert _get(url) == (401, "Unauthorized")
    assert _get(url, "not-the-metrics-token") == (401, "Unauthorized")
    assert Heartbeat.objects.filter(name=f"worker:{hostname}").exists()

    worker.stop()

    assert not Heartbeat.objects.filter(name=f"worker:{hostname}").exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
