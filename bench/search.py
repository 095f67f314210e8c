"""``make bench``: payload search and export of the delivery log at a million deliveries.

Fills its own database (``webhooks_bench_search``, or ``BENCH_SEARCH_DATABASE_URL``) once with
``manage.py deliveries_generate`` up to ``--rows`` deliveries (about one event per five
deliveries, each event's data with a course id one event in a thousand shares, a student id of
its own and a subject one in five share), then prints:

- the size of the events table and of the payload search index, and how long building the
  index (CONCURRENTLY, as the migration does) and the replay-number unique index take;
- the payload search: the selector's event lookup and the log's first page (100 rows, newest
  first) for a value one event has, a course id ~1/1000 of events have, a subject ~1/5 have and
  a value none has, over every school and over one school; then the admin list page with the
  filter, through Django's test client;
- the export of a few thousand rows (CSV and JSON, streamed, read to the end).

Median and 90th percentile of warm runs. Asserts nothing.
Options: ``--rows`` (1,000,000), ``--runs`` (15 timed runs after 3 warm-up runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import deliveries_ensure, environment_in_process

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_search"


def _timed(work: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median and p90 in ms of ``runs`` warm runs of ``work``, and its last result."""
    for _ in range(3):
        result = work()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[max(0, int(len(timings) * 0.9) - 1)], result


def _megabytes(cursor: Any, relation: str) -> float:
    cursor.execute("SELECT pg_relation_size(%s::regclass)", [relation])
    return cursor.fetchone()[0] / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()

    environment_in_process(variable="BENCH_SEARCH_DATABASE_URL", default_url=DEFAULT_DATABASE_URL)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from deliveries.models import Delivery
    from deliveries.selectors import deliveries_payload_q
    from events.models import Event
    from schools.models import School
    from schools.services import admin_groups_sync, school_admin_grant

    call_command("migrate", verbosity=0)
    deliveries_ensure(options.rows)
    deliveries, events = Delivery.objects.count(), Event.objects.count()
    school = School.objects.get(slug="bench-01")

    print(f"\nPayload search with {deliveries:,} deliveries of {events:,} events")
    with connection.cursor() as cursor:
        table = _megabytes(cursor, "events_event")
        index = _megabytes(cursor, "event_data_search_idx")
        print(f"events table {table:,.0f} MB; payload index event_data_search_idx {index:,.0f} MB")
        builds = [
            (
                "payload index (GIN, CONCURRENTLY)",
                "CREATE INDEX CONCURRENTLY bench_payload_idx ON events_event USING gin "
                """(jsonb_to_tsvector('simple'::regconfig, data, '["string", "numeric"]'))""",
                "bench_payload_idx",
            ),
            (
                "replay unique index (CONCURRENTLY)",
                "CREATE UNIQUE INDEX CONCURRENTLY bench_replay_idx ON deliveries_delivery "
                "(event_id, subscription_id, replay_number)",
                "bench_replay_idx",
            ),
        ]
        for label, sql, name in builds:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
            started = time.perf_counter()
            cursor.execute(sql)
            took = time.perf_counter() - started
            size = _megabytes(cursor, name)
            cursor.execute(f"DROP INDEX {name}")
            print(f"build {label:<36} {took:>6.1f} s, {size:,.0f} MB")

    unique = Event.objects.filter(school=school).order_by("created_at").first()
    student = unique.data["student"]["id"] if unique else "s-0"
    terms = [
        (f"one event ({student})", student),
        ("~1/1000 of events (c-42)", "c-42"),
        ('phrase ~1/1000 ("Physics 108")', '"Physics 108"'),
        ("~1/5 of events (physics)", "physics"),
        ("no match (c-nope)", "c-nope"),
    ]
    print(
        f"\n{'search (first page of 100, newest first)':<46} {'median':>9} {'p90':>9} {'rows':>7}"
    )
    for scope_label, school_ids in (("all schools", None), ("one school", [school.pk])):
        for label, term in terms:

            def page(term: str = term, school_ids: Any = school_ids) -> int:
                queryset = Delivery.objects.filter(
                    deliveries_payload_q(term=term, school_ids=school_ids)
                )
                if school_ids is not None:
                    queryset = queryset.filter(school_id__in=school_ids)
                return len(list(queryset.order_by("-created_at").values_list("pk")[:100]))

            median, p90, rows = _timed(page, options.runs)
            print(f"{scope_label + ', ' + label:<46} {median:>6.1f} ms {p90:>6.1f} ms {rows:>7}")

    admin_groups_sync()
    users = get_user_model().objects
    superuser = users.filter(username="bench-admin").first() or users.create_superuser(
        "bench-admin", "bench@example.org", None
    )
    school_admin, _ = users.get_or_create(username="bench-school-admin")
    school_admin_grant(user=school_admin, school=school)
    log = "/admin/deliveries/delivery/"
    pages = [
        ("admin list, superuser, no filter", superuser, log),
        ("admin list, school admin, no filter", school_admin, log),
        ("admin list, superuser, payload=c-42", superuser, f"{log}?payload=c-42"),
        ("admin list, superuser, payload=physics", superuser, f"{log}?payload=physics"),
        ("admin list, school admin, payload=c-42", school_admin, f"{log}?payload=c-42"),
        ("export CSV, superuser, payload=c-42", superuser, f"{log}export/csv/?payload=c-42"),
        ("export JSON, superuser, payload=c-42", superuser, f"{log}export/json/?payload=c-42"),
        (
            "export CSV, school admin, payload=physics",
            school_admin,
            f"{log}export/csv/?payload=physics&subscription="
            + str(Delivery.objects.filter(school=school).values_list("subscription_id")[0][0]),
        ),
    ]
    print(f"\n{'page (Django test client, warm)':<46} {'median':>9} {'p90':>9} {'size':>9}")
    for label, user, path in pages:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)

        def load(client: Client = client, path: str = path) -> tuple[int, int]:
            response = client.get(path)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}")
            if response.streaming:
                body = b"".join(response.streaming_content)  # type: ignore[arg-type]
                return len(body), body.count(b"\n")
            return len(response.content), 0

        median, p90, (size, lines) = _timed(load, options.runs)
        extra = f" ({lines - 1:,} rows)" if "CSV" in label else ""
        print(f"{label:<46} {median:>6.1f} ms {p90:>6.1f} ms {size // 1024:>6} KB{extra}")


if __name__ == "__main__":
    main()
