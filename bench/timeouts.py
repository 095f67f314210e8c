"""What recording a receiver host's outage costs: many webhooks' attempts timing out together.

When a host that ``--webhooks`` webhooks point at stops answering, each of them has its
concurrency's worth of attempts in flight (``--in-flight``, 8 by default), and they all time
out within a second or so. The recorder then writes every result, opens every circuit and
finds each circuit's probe, while the other webhooks' answers wait behind that work in its
queue (``make faults``' ``isolation-many``).

This claims those attempts, then records them as timeouts with the recorder's own call
(``deliveries_record``, handing slots over as the recorder does) in batches of ``--batch``,
and prints the CPU it took in this process (the recorder's thread) and in its PostgreSQL
session, read from ``/proc``, and the time, for each of ``--rounds`` rounds. No request is
made. Uses its own database (``webhooks_bench_timeouts``, or ``BENCH_TIMEOUTS_DATABASE_URL``;
emptied on each run) and Redis database 13 with a queue of its own (the retries' and the
probes' messages, which no worker reads). The log lines are made as in a worker, and written
to ``/dev/null``. Asserts nothing. Run as ``python -m bench.timeouts``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from bench.deliveries import _environment, bench_school, django_start_on_empty_database
from bench.floor import process_cpu_seconds

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_timeouts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=8, help="attempts per webhook")
    parser.add_argument("--batch", type=int, default=50, help="results recorded at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = os.environ.get("BENCH_TIMEOUTS_DATABASE_URL", DEFAULT_DATABASE_URL)
    django_start_on_empty_database(_environment())
    # The recorder's log lines are made and written as in a worker, to nowhere.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    from deliveries.models import CircuitState, Delivery, EndpointState
    from deliveries.services import event_fan_out
    from deliveries.services.claim import deliveries_claim
    from deliveries.services.record import CircuitChanges, RecordProgress, deliveries_record
    from events.services import event_publish
    from subscriptions.services import subscription_create
    from webhook_engine.errors import ErrorKind
    from webhook_engine.transport import TransportResult

    school = bench_school()
    for number in range(args.webhooks):
        subscription_create(
            school=school,
            name=f"down {number}",
            url=f"http://127.0.0.1:9/down/{number}",  # never reached: no request is made
            topics=["*"],
            max_concurrency=args.in_flight,
        )
    timeout = TransportResult(
        request_headers={"content-type": "application/json"},
        duration_ms=15_000,
        error_kind=ErrorKind.TIMEOUT,
        error_message="The receiver did not answer within 15 s",
    )
    print("Recording timeouts (PostgreSQL; no request is made)")
    print(
        f"  {args.webhooks} webhooks x {args.in_flight} attempts in flight, "
        f"recorded {args.batch} at a time"
    )
    for round_number in range(args.rounds):
        EndpointState.objects.all().delete()
        Delivery.objects.all().delete()
        ids: list[str] = []
        for number in range(args.in_flight):
            event = event_publish(
                school=school,
                type="course.created",
                data={"course": {"id": f"c-{round_number}-{number}"}},
            )
            ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
        claims = deliveries_claim(delivery_ids=ids, capacity=len(ids), renewed=True).claims
        started, started_cpu = time.perf_counter(), time.process_time()
        started_backend = process_cpu_seconds(backend)
        for start in range(0, len(claims), args.batch):
            batch = claims[start : start + args.batch]
            deliveries_record(
                claims=batch,
                results=[timeout] * len(batch),
                pull_waiting=False,
                circuits=CircuitChanges(),
                progress=RecordProgress(),
                hand_over=True,
            )
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
        ended_backend = process_cpu_seconds(backend)
        database = (
            "unknown (another host)"
            if started_backend is None or ended_backend is None
            else f"{(ended_backend - started_backend) * 1000:.0f} ms"
        )
        opened = EndpointState.objects.filter(circuit_state=CircuitState.OPEN).count()
        print(
            f"  round {round_number + 1}: {len(claims)} timeouts in {wall * 1000:.0f} ms, "
            f"CPU {cpu * 1000:.0f} ms here and {database} in PostgreSQL; "
            f"{opened} circuits open"
        )


if __name__ == "__main__":
    main()
