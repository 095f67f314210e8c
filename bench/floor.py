"""What a delivery costs before the engine does any work of its own: the floor under
``cpu_ms_per_delivery`` in the side-by-side benchmark (``../shared/bench-peer/``).

That benchmark counts, besides the worker and its database sessions, the loop that publishes
the events one by one (``event_publish``, each in its own transaction) with its database
session, and the receiver. This measures those parts alone, one after the other, on a quiet
machine, with nothing else running:

- publish: ``--events`` events published one by one, as the benchmark's loop does (the CPU of
  this process and of its PostgreSQL session, read from ``/proc``, and the time they took; no
  worker runs, so nothing is fanned out);
- send: as many POSTs of a signed body to a loopback receiver through the engine's transport
  (``webhook_engine.transport``: ``requests``' adapter, with the deadline and the checked
  destination), and through a plain ``requests`` session like the benchmark's raw loop;
- receive: the CPU of ``bench.receiver``, which answers without checking anything (the
  benchmark's receiver also verifies each signature, which costs more).

It prints each part per delivery and their sum for one and for ten webhooks per event (the
benchmark's two shapes: a publish is shared by the event's deliveries). What a shape costs in
``cpu_ms_per_delivery`` above that sum is the engine's own: fan-out, claims, records, the
worker's database sessions and Celery. Uses its own database (``webhooks_bench_floor``);
asserts nothing. Run as ``python -m bench.floor [--events N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import environment_in_process
from bench.deliveries import Child, _free_port, bench_school

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_floor"
DATA = {"course": {"id": "c-1", "name": "Mathematics 101", "start": "2026-03-26T07:00:00Z"}}


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU of a process on this host, or None where ``/proc`` cannot tell (the
    database on another host)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(count: int, step: Callable[[], object], *, pids: tuple[int, ...] = ()) -> list[float]:
    """Milliseconds per call of ``step``, after a warm-up of a tenth as many calls: the wall
    time, this process's CPU, then each of ``pids``' CPU (NaN where it cannot be read)."""
    for _ in range(max(count // 10, 10)):
        step()
    before = [process_cpu_seconds(pid) for pid in pids]
    started, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        step()
    wall = (time.perf_counter() - started) * 1000 / count
    own = (time.process_time() - started_cpu) * 1000 / count
    after = [process_cpu_seconds(pid) for pid in pids]
    others = [
        float("nan") if b is None or a is None else (a - b) * 1000 / count
        for b, a in zip(before, after, strict=True)
    ]
    return [wall, own, *others]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    environment_in_process(variable="FLOOR_DATABASE_URL", default_url=DEFAULT_DATABASE_URL)
    os.environ.setdefault("WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8")

    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.db import connection

    from deliveries.services.config import transport_get
    from events.services import event_publish
    from webhook_engine.signing import sign_v1

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE events_event CASCADE")
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    school = bench_school()
    count = args.events
    publish_wall, publish, publish_db = measured(
        count,
        lambda: event_publish(school=school, type="course.created", data=DATA),
        pids=(backend,),
    )
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE events_event CASCADE")

    port = _free_port()
    receiver = Child(
        "floor-receiver",
        [sys.executable, "-m", "bench.receiver", str(port)],
        dict(os.environ),
        "ready",
    )
    try:
        url = f"http://127.0.0.1:{port}/hook/0"
        body = b'{"type":"course.created","timestamp":"2026-03-26T07:00:00Z","data":{}}' * 3
        secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        transport = transport_get()

        def engine_post() -> object:
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": "msg_floor",
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_v1(
                    secret=secret, msg_id="msg_floor", timestamp=timestamp, body=body
                ),
            }
            result = transport.send(
                url=url, body=body, headers=headers, timeout_seconds=15, max_body_bytes=65536
            )
            if result.status != 200:
                raise SystemExit(f"the receiver answered {result.status}: {result.error_message}")
            return result

        session = requests.Session()

        def plain_post() -> object:
            return session.post(url, data=body, headers={"Content-Type": "application/json"})

        _wall, send, receive = measured(count, engine_post, pids=(receiver.process.pid,))
        _wall, plain, plain_receive = measured(count, plain_post, pids=(receiver.process.pid,))
    finally:
        receiver.stop()

    print(f"What a delivery costs before the engine's own work ({count} of each, CPU ms):")
    print(
        f"  publish, one event         {publish:6.3f} + {publish_db:6.3f} in its database session"
    )
    print(f"  signed POST, the engine's  {send:6.3f}  (a plain requests session: {plain:6.3f})")
    print(
        f"  receiver, answering only   {receive:6.3f}  (the plain session's: {plain_receive:6.3f})"
    )
    print(
        f"  publishing alone: {publish_wall:.3f} ms an event, {1000 / publish_wall:,.0f} events/s "
        "(no shape that publishes one by one delivers faster)"
    )
    for webhooks in (1, 10):
        floor = (publish + publish_db) / webhooks + send + receive
        print(f"  floor with {webhooks:2d} webhook(s) an event: {floor:6.3f} ms per delivery")


if __name__ == "__main__":
    main()
