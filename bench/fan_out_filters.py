"""``make bench``: what payload filters cost fan-out, for one school with 1,000 webhooks.

Fills its own database (``webhooks_bench_fan_out_filters``, or ``BENCH_FILTERS_DATABASE_URL``)
with one school and ``--webhooks`` webhooks on ``course.*``, then for each kind of filter:

- none: no webhook has a filter;
- one condition every event passes (``course.payment_type eq "free"``);
- a tenth: webhook n passes events of group n mod 10, so each event goes to a tenth of them;
- five conditions, nested (all of three conditions and an any of two), every event passing;

publishes ``--events`` events and times fan-out in this process, as the worker runs it
(claiming the events, matching, rendering, inserting the deliveries with COPY; the deliveries
are not handed to workers; the fastest of ``--repeat`` runs). It also times the matching alone
(topics and filter, per event for all the webhooks) and one compiled filter's evaluation.
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from bench.common import environment_in_process

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/webhooks_bench_fan_out_filters"

EVERY = {"field": "course.payment_type", "op": "eq", "value": "free"}
NESTED = {
    "all": [
        EVERY,
        {"field": "course.instructors.0.id", "op": "gt", "value": 0},
        {"field": "student.class", "op": "exists", "value": False},
        {
            "any": [
                {"field": "group.id", "op": "in", "value": [100, 200, 300]},
                {"field": "course.name", "op": "starts_with", "value": "Intro"},
            ]
        },
    ]
}


def _tenth(n: int) -> dict[str, Any]:
    return {"field": "group.id", "op": "eq", "value": n % 10}


SCENARIOS = [
    ("no filter", lambda n: None),
    ("1 condition, every event passes", lambda n: EVERY),
    ("1 condition, a tenth of webhooks pass", _tenth),
    ("5 conditions nested, every event passes", lambda n: NESTED),
]


def _data(n: int) -> dict[str, Any]:
    return {
        "course": {
            "id": 909850 + n,
            "name": "Introduction to Webhooks",
            "payment_type": "free",
            "instructors": [{"id": 890789, "first_name": "Alex", "last_name": "Smith"}],
        },
        "group": {"id": n % 10},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="fan-out runs per kind (fastest)")
    options = parser.parse_args()

    environment_in_process(variable="BENCH_FILTERS_DATABASE_URL", default_url=DEFAULT_DATABASE_URL)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from deliveries.services.fan_out import _events_fan_out_batch, subscriptions_receiving
    from events.models import Event
    from schools.models import School
    from subscriptions.models import Subscription
    from subscriptions.selectors import subscriptions_active_by_school
    from webhook_engine.filters import filter_compile

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE deliveries_delivery, events_event CASCADE")
    school, _ = School.objects.get_or_create(slug="bench-filters", defaults={"name": "Bench"})
    Subscription.objects.filter(school=school).delete()
    Subscription.objects.bulk_create(
        Subscription(
            school=school, name=f"Webhook {n}", url="https://example.org/hook", topics=["course.*"]
        )
        for n in range(options.webhooks)
    )
    webhooks = list(Subscription.objects.filter(school=school).order_by("id"))

    print(
        f"Fan-out of {options.events} course.created events to {options.webhooks:,} webhooks "
        "of one school, in this process (deliveries inserted, not sent):"
    )
    print(
        f"{'filters':<42}{'fan-out ms/event':>18}{'deliveries/event':>18}"
        f"{'matching ms/event':>19}{'µs/evaluation':>15}"
    )
    for label, make in SCENARIOS:
        for n, webhook in enumerate(webhooks):
            webhook.payload_filter = make(n)
        Subscription.objects.bulk_update(webhooks, ["payload_filter"], batch_size=500)
        # The fastest of the runs: on a shared machine other work only ever adds time.
        fan_out_ms = math.inf
        for _run in range(options.repeat):
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE deliveries_delivery, events_event CASCADE")
            now = timezone.now()
            Event.objects.bulk_create(
                Event(school=school, type_id="course.created", data=_data(n), occurred_at=now)
                for n in range(options.events)
            )
            started = time.perf_counter()
            while _events_fan_out_batch(
                limit=options.events, passed_over=set(), hand_off=lambda ids, **_: None
            ).fanned_out:
                pass
            fan_out_ms = min(fan_out_ms, (time.perf_counter() - started) * 1000)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM deliveries_delivery")
            deliveries = cursor.fetchone()[0]

        # The matching alone, as a batch runs it: webhooks loaded once, each filter compiled
        # once, then every event against every webhook (topics, then the filter).
        events = list(Event.objects.filter(school=school))
        loaded = subscriptions_active_by_school(school_ids=[school.pk])[school.pk]
        subscriptions_receiving(event=events[0], subscriptions=loaded)  # compiles the filters
        match_ms = math.inf
        for _run in range(5):
            started = time.perf_counter()
            for event in events:
                subscriptions_receiving(event=event, subscriptions=loaded)
            match_ms = min(match_ms, (time.perf_counter() - started) * 1000 / len(events))
        # One filter evaluation: the compiled predicates alone over the events' data.
        predicates = [filter_compile(webhook.payload_filter) for webhook in loaded]
        datas = [event.data for event in events]
        evaluation_us = math.inf
        for _run in range(5):
            started = time.perf_counter()
            for data in datas:
                for predicate in predicates:
                    predicate(data)
            elapsed = time.perf_counter() - started
            evaluation_us = min(evaluation_us, elapsed * 1e6 / (len(datas) * len(predicates)))
        shown = "—" if make(0) is None else f"{evaluation_us:.2f}"
        print(
            f"{label:<42}{fan_out_ms / options.events:>18.2f}"
            f"{deliveries / options.events:>18.0f}{match_ms:>19.2f}{shown:>15}"
        )


if __name__ == "__main__":
    main()
