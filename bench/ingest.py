"""Ingest latency: ``POST /api/v1/events/`` at a steady rate, against gunicorn, PostgreSQL, Redis.

An open-loop load: requests are sent on schedule whether or not earlier ones have answered, so
a slow server shows up as latency instead of silently lowering the rate. Latency is measured from
each request's scheduled time to its answer. Reports figures; asserts nothing.

Options: ``--rate`` (requests/s, 200), ``--seconds`` (30), ``--web-workers`` (gunicorn processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
import uuid

from bench.deliveries import (
    Child,
    _database_create,
    _environment,
    _free_port,
    _percentile,
    bench_school,
    stop_on_signals,
    worker_command,
)

WARM_UP_SECONDS = 5


def _queue_purge(queue: str) -> None:
    """Drop what this run left in its own queue (fan-outs nobody consumed with --no-worker)."""
    from celery import current_app

    with current_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def _wait_for_http(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start listening")


async def _open_loop(port: int, key: str, *, rate: float, total: int) -> tuple[list, float]:
    """Send ``total`` requests at ``rate``/s over keep-alive connections opened as needed; each
    latency runs from the request's scheduled time (so queueing anywhere counts)."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    results: list[tuple[float, int, float]] = []

    def request_bytes(n: int) -> bytes:
        body = json.dumps(
            {
                "school": "bench",
                "type": "course.created",
                "data": {"course": {"id": f"c-{n}", "name": "Mathematics 101"}},
            }
        ).encode()
        head = (
            f"POST /api/v1/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def one(n: int, scheduled: float) -> None:
        connection = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        reader, writer = connection
        status = 0
        try:
            writer.write(request_bytes(n))
            await writer.drain()
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            idle.append(connection)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            writer.close()
        results.append(((time.monotonic() - scheduled) * 1000, status, scheduled - start))

    async def run(count: int, first: int) -> None:
        nonlocal start
        tasks = []
        start = time.monotonic()
        for n in range(count):
            scheduled = start + n / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(one(first + n, scheduled)))
        await asyncio.gather(*tasks)

    start = time.monotonic()
    # Warm-up at the same rate (connections opened, every server thread's first request served),
    # not measured: the figures are for the steady state.
    await run(int(rate * WARM_UP_SECONDS), first=0)
    results.clear()
    await run(total, first=int(rate * WARM_UP_SECONDS))
    return results, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--timeline", help="write each request's start and latency to this file")
    parser.add_argument(
        "--no-worker", action="store_true", help="run no fan-out worker on this machine"
    )
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per process")
    parser.add_argument(
        "--worker-threads", type=int, default=1, help="processes of the fan-out worker"
    )
    args = parser.parse_args()

    stop_on_signals()
    env = _environment()
    _database_create(env["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from schools.services import platform_key_create

    bench_school()
    _, key = platform_key_create(name=f"bench-{uuid.uuid4().hex[:6]}")

    port = _free_port()
    web = Child(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "webhooks_project.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            f"--workers={args.web_workers}",
            f"--threads={args.threads}",
            "--worker-class=gthread",
            "--keep-alive=30",
            "--log-level=warning",
        ],
        {**env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
        "",
    )
    # The fan-out worker shares these 2 cores unless --no-worker (then messages wait in Redis
    # and the figures are the API's alone, as with workers on other hosts).
    worker = None
    if not args.no_worker:
        worker = Child(
            "worker",
            worker_command(
                env["CELERY_TASK_DEFAULT_QUEUE"],
                concurrency=args.worker_threads,
                hostname="ingest",
                pool="prefork",
            ),
            env,
            "",
        )
    try:
        _wait_for_http(port)
        results, elapsed = asyncio.run(
            _open_loop(port, key, rate=args.rate, total=int(args.rate * args.seconds))
        )
    finally:
        web.stop()
        if worker is not None:
            worker.stop()
        _queue_purge(env["CELERY_TASK_DEFAULT_QUEUE"])

    if args.timeline:
        with open(args.timeline, "w") as handle:
            handle.writelines(f"{at:.3f} {ms:.1f} {status}\n" for ms, status, at in results)
    latencies = [ms for ms, status, _ in results if status == 202]
    errors = len(results) - len(latencies)
    print()
    print("Ingest benchmark: POST /api/v1/events/ (gunicorn, PostgreSQL, Redis, open-loop load)")
    where = "no fan-out worker here" if args.no_worker else "a fan-out worker on the same cores"
    print(
        f"  web: {args.web_workers} gunicorn processes x {args.threads} threads, {where}; "
        f"{len(results)} requests at {args.rate:g}/s for {args.seconds:g} s "
        f"(sent in {elapsed:.1f} s)"
    )
    print(f"  accepted: {len(latencies)}, errors: {errors}")
    if latencies:
        print(
            f"  latency: p50 {statistics.median(latencies):.1f} ms, "
            f"p99 {_percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
        )


if __name__ == "__main__":
    main()
