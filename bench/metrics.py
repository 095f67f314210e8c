"""``make bench``: what the metrics and the attempt log lines cost.

1. The record stage's call (``deliveries.metrics.attempts_observe``) for batches of 20 attempts
   built in memory, in prometheus-client's multiprocess mode: counters and histograms only
   (attempt log off), and with the attempt log line written in the plain and the JSON format
   (to a stream that discards it). Printed per attempt.
2. ``GET /metrics`` through Django's test client (everything but the socket) on its own
   database (``webhooks_bench_metrics``, or ``BENCH_METRICS_DATABASE_URL``) holding
   ``--webhooks`` webhooks over ``--schools`` schools (a tenth failing, spread over the
   schools), a backlog of due deliveries and events awaiting fan-out, with the metric files of
   ``--processes`` processes. Median and p90 of warm scrapes.

Asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid

from bench.common import environment_in_process

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_metrics"
TOKEN = "bench-metrics-token-0123456789"  # noqa: S105


def _environment() -> None:
    environment_in_process(variable="BENCH_METRICS_DATABASE_URL", default_url=DEFAULT_DATABASE_URL)
    os.environ["WEBHOOKS_METRICS_TOKEN"] = TOKEN
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="webhooks-bench-metrics-")


def _batch(size: int) -> list:
    """``size`` recorded attempts as the record stage returns them (not saved)."""
    from django.utils import timezone

    from deliveries.models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
    from schools.models import School

    now = timezone.now()
    school = School(id=1, slug="lycee-victor-hugo", name="Lycée")
    attempts = []
    for index in range(size):
        failed = index % 5 == 0
        delivery = Delivery(
            id=uuid.uuid4(),
            school=school,
            subscription_id=uuid.uuid4(),
            event_type="course.created",
            status=DeliveryStatus.PENDING if failed else DeliveryStatus.DELIVERED,
            created_at=now - dt.timedelta(milliseconds=40),
        )
        attempts.append(
            DeliveryAttempt(
                delivery=delivery,
                number=1 + index % 3,
                trigger=AttemptTrigger.AUTOMATIC,
                started_at=now,
                duration_ms=5 + index,
                response_status=500 if failed else 200,
                error_kind="http_status" if failed else "",
            )
        )
    return attempts


def _per_attempt_microseconds(batch: list, rounds: int) -> str:
    """Wall and CPU time per attempt (CPU time moves less when other processes share the cores)."""
    from deliveries.metrics import attempts_observe

    attempts_observe(batch)  # labels and files made
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        attempts_observe(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per = rounds * len(batch) / 1e6
    return f"{wall / per:6.2f} µs ({cpu / per:6.2f} µs CPU)"


def _record_cost(rounds: int) -> None:
    from common.logging import JsonFormatter

    batch = _batch(20)
    attempt_log = logging.getLogger("deliveries.attempts")
    attempt_log.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    attempt_log.addHandler(handler)
    print(f"\nattempts_observe, batches of 20, {rounds} batches (multiprocess mode):")
    attempt_log.setLevel(logging.WARNING)
    print(f"  metrics only (attempt log off): {_per_attempt_microseconds(batch, rounds)}")
    attempt_log.setLevel(logging.INFO)
    for name, formatter in (
        ("plain", logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")),
        ("json", JsonFormatter()),
    ):
        handler.setFormatter(formatter)
        handler.stream = io.StringIO()
        cost = _per_attempt_microseconds(batch, rounds)
        print(f"  metrics + {name:<5} log line:     {cost}")
    print("  (per attempt; the record stage itself writes a batch in several ms)")


def _child_records(count: int) -> None:
    from deliveries.metrics import attempts_observe

    logging.getLogger("deliveries.attempts").setLevel(logging.WARNING)
    batch = _batch(20)
    for _ in range(count // 20):
        attempts_observe(batch)


def _fill(webhooks: int, schools: int, due: int, awaiting: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from deliveries.models import Delivery, DeliveryStatus, Heartbeat
    from events.models import Event
    from schools.models import School
    from subscriptions.models import Subscription

    now = timezone.now()
    with transaction.atomic():
        School.objects.filter(slug__startswith="bench-metrics-").delete()
        created = School.objects.bulk_create(
            School(slug=f"bench-metrics-{index:04d}", name=f"School {index}")
            for index in range(schools)
        )
        subscriptions = Subscription.objects.bulk_create(
            Subscription(
                school=created[index % schools],
                name=f"Webhook {index}",
                url="http://127.0.0.1:9/hook",  # loopback, and never sent: no secret
                topics=["*"],
                # A tenth failing, one in each of the first schools.
                failing_since=now - dt.timedelta(minutes=index) if index < webhooks // 10 else None,
            )
            for index in range(webhooks)
        )
        events = Event.objects.bulk_create(
            Event(
                school=created[index % schools],
                type_id="course.created",
                data={},
                occurred_at=now,
                fanned_out_at=None if index < awaiting else now,
            )
            for index in range(max(awaiting, 1) + due)
        )
        Delivery.objects.bulk_create(
            (
                Delivery(
                    school=created[index % schools],
                    event=events[-1 - index],
                    subscription=subscriptions[index % webhooks],
                    event_type="course.created",
                    body=b"{}",
                    content_type="application/json",
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=now - dt.timedelta(seconds=index),
                )
                for index in range(due)
            ),
            batch_size=1000,  # PostgreSQL takes at most 65,535 parameters a statement
        )
        for name in ("beat", "sweeper", "worker:bench@host"):
            Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": now})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--schools", type=int, default=100)
    parser.add_argument("--due", type=int, default=5000)
    parser.add_argument("--awaiting", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--scrapes", type=int, default=30)
    options = parser.parse_args()

    _environment()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    _record_cost(options.rounds)

    call_command("migrate", verbosity=0)
    _fill(options.webhooks, options.schools, options.due, options.awaiting)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_child_records, args=(200,)) for _ in range(options.processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    files = len(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]))

    client = Client(HTTP_HOST="127.0.0.1")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    for _ in range(3):
        response = client.get("/metrics", **headers)
        assert response.status_code == 200, response.status_code
    timings = []
    cpu = time.process_time()
    for _ in range(options.scrapes):
        started = time.perf_counter()
        response = client.get("/metrics", **headers)
        timings.append((time.perf_counter() - started) * 1000)
    cpu = (time.process_time() - cpu) / options.scrapes * 1000
    timings.sort()
    series = sum(
        1 for line in response.content.decode().splitlines() if line and not line.startswith("#")
    )
    print(
        f"\nGET /metrics with {options.webhooks:,} webhooks in {options.schools} schools "
        f"({options.webhooks // 10} failing), {options.due:,} due deliveries, "
        f"{options.awaiting:,} events awaiting fan-out, {files} metric files:"
    )
    print(
        f"  median {statistics.median(timings):.1f} ms, "
        f"p90 {timings[int(len(timings) * 0.9) - 1]:.1f} ms ({cpu:.1f} ms CPU in this process), "
        f"{series} series, {len(response.content) // 1024} KB"
    )
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
