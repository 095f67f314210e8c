"""``make bench``: delivery throughput and publish-to-first-attempt latency, with real processes.

Publishes events to subscriptions pointed at a fast local receiver, with real Celery workers,
PostgreSQL and Redis, and prints what it measured. It asserts nothing.

- burst: N events x M subscriptions published at once; sustained deliveries/s from the first
  publish to the last attempt;
- paced: events published at a steady rate the workers keep up with; p50/p99 of the time from
  the event's commit to the start of its first attempt.

Uses its own database (``webhooks_bench``, created if missing), Redis database 13 and a queue
name of its own. Options: ``--events``, ``--subscriptions``, ``--workers``, ``--concurrency``,
``--paced-rate``, ``--paced-seconds``, ``--slow-ms``.

A paced phase whose p99 is over ``--slow-ms`` (100 ms, the engine's target) writes every one
of its deliveries' times to a CSV file and says which half the slow ones waited in, and when:
a stall that comes once in many runs can then be looked at after the run has cleaned up.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment() -> dict[str, str]:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"webhooks-bench-{uuid.uuid4().hex[:8]}")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
    os.environ.setdefault("WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8")
    os.environ.setdefault(
        "WEBHOOKS_ENCRYPTION_KEYS", "vV4DqoQqzgOcdG2Ct1f2vuL8K3Mqb1fNoOb4W4FqcZQ="
    )
    os.environ["DJANGO_SETTINGS_MODULE"] = "webhooks_project.settings"
    os.environ["PYTHONUNBUFFERED"] = "1"
    return dict(os.environ)


def _database_create(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def django_start_on_empty_database(env: dict[str, str]) -> None:
    """Create the bench's database if missing, set Django up, migrate, and empty the tables of
    webhooks, events and deliveries."""
    _database_create(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE deliveries_deliveryattempt, deliveries_delivery, events_event, "
            "subscriptions_subscription CASCADE"
        )


def bench_school() -> Any:
    """The benches' school (created on first use)."""
    from schools.models import School

    school, _ = School.objects.get_or_create(
        slug="bench", defaults={"name": "Bench School", "timezone": "Europe/Paris"}
    )
    return school


class Child:
    def __init__(self, name: str, command: list[str], env: dict[str, str], marker: str) -> None:
        self.name = name
        self.log_path = Path(tempfile.gettempdir()) / f"webhooks-bench-{name}-{os.getpid()}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while marker not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run like Ctrl-C does, so ``finally`` stops the processes."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def worker_command(
    queue: str, *, concurrency: int, hostname: str, pool: str = "prefork"
) -> list[str]:
    """A Celery worker on ``queue`` only, quiet, without the cluster chatter."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "webhooks_project",
        "worker",
        "--loglevel=WARNING",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--queues={queue}",
        f"--hostname={hostname}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _slow_report(firsts: list[tuple[Any, ...]], slow_ms: float, logs: list[Path]) -> None:
    """Write each paced delivery's times to a CSV file and print where and when the ones over
    ``slow_ms`` waited. ``firsts``: (first attempt's start, event published, delivery built,
    delivery id) per delivery."""
    start = min(published for _, published, _, _ in firsts)
    rows = sorted(
        (
            (published - start).total_seconds() * 1000,
            (built - published).total_seconds() * 1000,
            (first - built).total_seconds() * 1000,
            (first - published).total_seconds() * 1000,
            delivery_id,
        )
        for first, published, built, delivery_id in firsts
    )
    path = Path(tempfile.gettempdir()) / f"webhooks-bench-paced-{os.getpid()}.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["published_ms", "publish_to_fan_out_ms", "fan_out_to_attempt_ms", "total_ms", "id"]
        )
        writer.writerows(
            [f"{a:.1f}", f"{b:.1f}", f"{c:.1f}", f"{d:.1f}", str(e)] for a, b, c, d, e in rows
        )
    slow = [row for row in rows if row[3] > slow_ms]
    print(
        f"  slow:    {len(slow)} deliveries over {slow_ms:g} ms, published from "
        f"+{slow[0][0] / 1000:.2f} s to +{slow[-1][0] / 1000:.2f} s; the longest waits "
        f"{max(row[1] for row in slow):.0f} ms before the fan-out and "
        f"{max(row[2] for row in slow):.0f} ms after it"
    )
    print(f"           every delivery's times: {path}")
    print(f"           the workers' logs: {', '.join(str(log) for log in logs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "gevent"])
    parser.add_argument("--receiver-delay-ms", type=int, default=0)
    parser.add_argument(
        "--paced-rate", type=float, default=20.0, help="events/s in the paced phase"
    )
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=100.0,
        help="a paced p99 over this keeps every delivery's times in a CSV file",
    )
    args = parser.parse_args()

    stop_on_signals()
    env = _environment()
    django_start_on_empty_database(env)

    from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
    from events.models import Event
    from events.services import event_publish
    from subscriptions.models import Subscription
    from subscriptions.services import subscription_create

    port = _free_port()
    receiver = Child(
        "receiver",
        [sys.executable, "-m", "bench.receiver", str(port), str(args.receiver_delay_ms)],
        env,
        "ready",
    )
    workers = [
        Child(
            f"worker{index}",
            worker_command(
                env["CELERY_TASK_DEFAULT_QUEUE"],
                concurrency=args.concurrency,
                hostname=f"bench{index}",
                pool=args.pool,
            ),
            env,
            "",
        )
        for index in range(args.workers)
    ]
    time.sleep(3)  # let the workers connect
    try:
        school = bench_school()
        for index in range(args.subscriptions):
            subscription_create(
                school=school,
                name=f"bench-{index}-{uuid.uuid4().hex[:6]}",
                url=f"http://127.0.0.1:{port}/hook/{index}",
                topics=["*"],
            )
        data = {"course": {"id": "c-1", "name": "Mathematics 101", "start": "2026-03-26T07:00:00Z"}}

        def wait_until_final(expected: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                final = Delivery.objects.exclude(status=DeliveryStatus.PENDING).count()
                if final >= expected:
                    return
                time.sleep(0.2)
            raise SystemExit(f"Only {final} of {expected} deliveries finished in {timeout} s")

        # Burst.
        total = args.events * args.subscriptions
        started = time.time()
        for _ in range(args.events):
            event_publish(school=school, type="course.created", data=data)
        published = time.time()
        wait_until_final(total, timeout=max(120.0, total / 20))
        failed = Delivery.objects.filter(status=DeliveryStatus.FAILED).count()
        last_attempt = DeliveryAttempt.objects.order_by("-started_at").first()
        assert last_attempt is not None
        finished = last_attempt.started_at.timestamp() + last_attempt.duration_ms / 1000
        burst_rate = total / (finished - started)

        # Paced.
        Delivery.objects.all().delete()
        Event.objects.all().delete()
        count = int(args.paced_rate * args.paced_seconds)
        interval = 1.0 / args.paced_rate
        next_at = time.monotonic()
        for _ in range(count):
            event_publish(school=school, type="course.created", data=data)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_until_final(count * args.subscriptions, timeout=120)
        firsts = DeliveryAttempt.objects.filter(number=1).values_list(
            "started_at", "delivery__event__created_at", "delivery__created_at", "delivery_id"
        )
        latencies = [
            (first - published).total_seconds() * 1000 for first, published, _, _ in firsts
        ]
        # The two halves: to the fan-out (the hand-off: request, message, the task's start) and
        # from it (building the deliveries, committing, claiming).
        hand_offs = [
            (built - published).total_seconds() * 1000 for _, published, built, _ in firsts
        ]
        claims = [(first - built).total_seconds() * 1000 for first, _, built, _ in firsts]

        print()
        print("Delivery benchmark (real worker processes, PostgreSQL, Redis, local receiver)")
        print(
            f"  workers: {args.workers} x {args.pool} pool, concurrency {args.concurrency}; "
            f"receiver answers after {args.receiver_delay_ms} ms"
        )
        print(
            f"  burst:   {args.events} events x {args.subscriptions} subscriptions = "
            f"{total} deliveries ({failed} failed)"
        )
        print(
            f"           published in {published - started:.2f} s; all attempted after "
            f"{finished - started:.2f} s"
        )
        print(f"           sustained {burst_rate:.0f} deliveries/s")
        print(
            f"  paced:   {count} events at {args.paced_rate:g}/s x {args.subscriptions} "
            f"subscriptions = {len(latencies)} deliveries"
        )
        print(
            f"           publish -> first attempt: p50 {statistics.median(latencies):.1f} ms, "
            f"p99 {_percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
        )
        print(
            f"           of which publish -> fan-out p50 {statistics.median(hand_offs):.1f} ms, "
            f"fan-out -> first attempt p50 {statistics.median(claims):.1f} ms"
        )
        if _percentile(latencies, 0.99) > args.slow_ms:
            _slow_report(list(firsts), args.slow_ms, [child.log_path for child in workers])
    finally:
        for worker in workers:
            worker.stop()
        receiver.stop()
        Subscription.objects.filter(school__slug="bench").delete()


if __name__ == "__main__":
    main()
