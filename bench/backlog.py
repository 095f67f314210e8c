"""``make bench``: how fast a webhook's backlog drains once its receiver answers again.

One webhook has ``--backlog`` deliveries waiting, as after its receiver was down, in a table
that already holds ``--delivered`` older deliveries, with planner statistics taken before the
backlog built up (after an outage autovacuum has usually not analysed the table again). A real
Celery worker sends them to a fast local receiver within the webhook's concurrency limit, and
the sweeper runs every 2 s as beat runs it. Prints the drain time and rate; asserts nothing.
``--statistics after`` takes the statistics once the backlog is there instead (as once
autovacuum has analysed the table during the drain).

Uses its own database (``webhooks_bench_backlog``, or ``BENCH_BACKLOG_DATABASE_URL``; created if
missing and emptied on each run), Redis database 13 and a queue name of its own. Options:
``--backlog``, ``--delivered``, ``--concurrency`` (of the worker), ``--statistics``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.deliveries import (
    Child,
    _environment,
    _free_port,
    bench_school,
    django_start_on_empty_database,
    stop_on_signals,
    worker_command,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_backlog"
SWEEP_EVERY_SECONDS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--delivered", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--statistics", choices=["before", "after"], default="before")
    args = parser.parse_args()

    stop_on_signals()
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_BACKLOG_DATABASE_URL", DEFAULT_DATABASE_URL)
    env = _environment()
    django_start_on_empty_database(env)

    from deliveries.models import Delivery, DeliveryStatus
    from deliveries.services import deliveries_sweep, event_fan_out
    from events.services import event_publish
    from subscriptions.services import subscription_create

    port = _free_port()
    receiver = Child("receiver", [sys.executable, "-m", "bench.receiver", str(port)], env, "ready")
    workers: list[Child] = []
    try:
        school = bench_school()
        subscription_create(
            school=school, name="backlog", url=f"http://127.0.0.1:{port}/hook", topics=["*"]
        )
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": "c-1", "name": "Maths"}}
        )
        [delivery_id] = event_fan_out(event_id=event.id)
        _rows_add(Delivery, delivery_id, args.delivered, args.backlog, args.statistics)
        workers.append(
            Child(
                "worker",
                worker_command(
                    env["CELERY_TASK_DEFAULT_QUEUE"],
                    concurrency=args.concurrency,
                    hostname="backlog",
                ),
                env,
                "",
            )
        )
        time.sleep(3)  # let the worker connect
        waiting = Delivery.objects.filter(status=DeliveryStatus.PENDING)
        started = time.monotonic()
        last_sweep = 0.0
        while (left := waiting.count()) and time.monotonic() - started < 600:
            if time.monotonic() - last_sweep >= SWEEP_EVERY_SECONDS:
                deliveries_sweep()
                last_sweep = time.monotonic()
            time.sleep(0.1)
        seconds = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()
        receiver.stop()
    total = args.backlog + 1
    print("Backlog drain (a real worker process, PostgreSQL, Redis, local receiver)")
    print(
        f"  {total:,} deliveries waiting for one webhook, {args.delivered:,} older ones stored, "
        f"worker concurrency {args.concurrency}, statistics taken {args.statistics} the backlog"
    )
    if left:
        print(f"  not drained after {seconds:.0f} s: {left:,} still pending")
        return
    print(f"  drained in {seconds:.1f} s: {total / seconds:,.0f} deliveries/s")


def _rows_add(
    delivery_model: type, delivery_id: object, delivered: int, backlog: int, statistics: str
) -> None:
    """``delivered`` old delivered copies of the delivery, the planner's statistics, then
    ``backlog`` waiting copies (no message, due one after another) and the delivery itself;
    with ``statistics`` "after", the statistics are taken again once the backlog is there."""
    from django.db import connection

    columns = [field.column for field in delivery_model._meta.concrete_fields]

    def copies(count: int, varied: dict[str, str]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO deliveries_delivery ({', '.join(columns)}) SELECT "  # noqa: S608
                + ", ".join(varied.get(column, f"d.{column}") for column in columns)
                + " FROM deliveries_delivery AS d, generate_series(1, %s) AS n WHERE d.id = %s",
                [count, delivery_id],
            )

    copies(
        delivered,
        {
            "id": "gen_random_uuid()",
            "replay_number": "1000000 + n",
            "status": "'delivered'",
            "next_attempt_at": "NULL",
            "enqueued_at": "NULL",
            "created_at": "d.created_at - interval '2 days'",
        },
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
        cursor.execute(
            "UPDATE deliveries_delivery SET enqueued_at = NULL WHERE id = %s", [delivery_id]
        )
    copies(
        backlog,
        {
            "id": "gen_random_uuid()",
            "replay_number": "n",
            "next_attempt_at": "d.next_attempt_at - interval '1 hour' + n * interval '1 ms'",
        },
    )
    if statistics == "after":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE deliveries_delivery")


if __name__ == "__main__":
    main()
