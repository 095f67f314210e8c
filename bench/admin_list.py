"""``make bench``: how fast the delivery log's list page, the home page and a webhook's page
render with a million deliveries.

Fills its own database (``webhooks_bench_admin``, or ``BENCH_ADMIN_DATABASE_URL``) once with
``manage.py deliveries_generate`` up to ``--rows`` deliveries, then loads admin pages through
Django's test client in this process (URL routing, middleware, the admin view, its queries and
the template: everything but the socket) and prints the median and 90th percentile of warm
loads. Asserts nothing.

Options: ``--rows`` (1,000,000), ``--loads`` (15 timed loads per page, after 3 warm-up loads).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import deliveries_ensure, environment_in_process

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_admin"


def _timed(client, url: str, loads: int) -> tuple[float, float, int]:
    """Median and p90 in ms of ``loads`` warm loads, and the response size."""
    for _ in range(3):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
    timings = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.9) - 1], len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=15)
    options = parser.parse_args()

    environment_in_process(variable="BENCH_ADMIN_DATABASE_URL", default_url=DEFAULT_DATABASE_URL)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from deliveries.models import Delivery
    from schools.models import School
    from schools.services import admin_groups_sync, school_admin_grant

    call_command("migrate", verbosity=0)
    deliveries_ensure(options.rows)
    total = Delivery.objects.count()

    admin_groups_sync()
    users = get_user_model().objects
    superuser = users.filter(username="bench-admin").first() or users.create_superuser(
        "bench-admin", "bench@example.org", None
    )
    school = School.objects.get(slug="bench-01")
    school_admin, _ = users.get_or_create(username="bench-school-admin")
    school_admin_grant(user=school_admin, school=school)
    sample = Delivery.objects.filter(school=school).only("pk", "subscription_id").first()
    since = (time.time() - 86_400) * 1000

    log = "/admin/deliveries/delivery/"
    pages = [
        ("Delivery log, superuser, no filter", superuser, log),
        ("  status = failed", superuser, f"{log}?status=failed"),
        ("  event type = course.created", superuser, f"{log}?event_type=course.created"),
        ("  last 24 hours", superuser, f"{log}?created_at_from="
         + time.strftime("%Y-%m-%dT%H:%M", time.gmtime(since / 1000))),
        ("  one webhook", superuser, f"{log}?subscription={sample.subscription_id}"),
        ("  search by delivery id", superuser, f"{log}?q={sample.pk}"),
        ("  search by id prefix (8 digits)", superuser, f"{log}?q={sample.pk.hex[:8]}"),
        ("  search by event type", superuser, f"{log}?q=course.created"),
        ("  page 100", superuser, f"{log}?p=100"),
        ("Delivery log, school admin (1 school)", school_admin, log),
        ("  school admin, status = failed", school_admin, f"{log}?status=failed"),
        ("One delivery with its attempts", superuser, f"{log}{sample.pk}/change/"),
        ("Webhooks list (100 webhooks)", superuser, "/admin/subscriptions/subscription/"),
        ("Home page, superuser (every school)", superuser, "/admin/"),
        ("Home page, school admin (1 school)", school_admin, "/admin/"),
        ("One webhook's page (chart, recent)", superuser,
         f"/admin/subscriptions/subscription/{sample.subscription_id}/change/"),
        ("Audit trail", superuser, "/admin/audit/auditentry/"),
    ]  # fmt: skip
    print(f"\nAdmin pages with {total:,} deliveries; warm loads through Django's test client:")
    print(f"{'page':<42} {'median':>9} {'p90':>9} {'size':>9}")
    headline = None
    for label, user, path in pages:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        median, p90, size = _timed(client, path, options.loads)
        headline = headline or median
        print(f"{label:<42} {median:>6.1f} ms {p90:>6.1f} ms {size // 1024:>6} KB")
    print(f"\nDelivery log list page at {total:,} rows: {headline:.1f} ms (median, warm).")


if __name__ == "__main__":
    main()
