"""Fill the delivery log with synthetic rows, fast, for measuring the admin at scale.

``manage.py deliveries_generate --count 1000000`` adds bench schools (``bench-01``, ...) with a
few webhooks each, then events fanned out to every webhook of their school, each delivery with
one attempt, spread over the last days (95 % delivered, 5 % failed with a 500). Event ``g`` has
the data ``{"course": {"id": "c-<0..999>", "name": "<subject> <number>"}, "student": {"id":
"s-<g>", ...}, "grade": <g % 100>, "status": "active"}``: a student id belongs to one event, a
course id to one event in a thousand, a subject to one in five (the payload search bench).
Rows are made by PostgreSQL itself (``INSERT ... SELECT generate_series``), a batch per
transaction; nothing is sent and no task is queued. PostgreSQL only. Not for a production database.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from events.models import EventType
from schools.models import School
from subscriptions.crypto import secret_encrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.services import signing_secret_generate

BODY = (
    b'{"id": "00000000-0000-0000-0000-000000000000", "type": "course.created", '
    b'"school": {"id": 1, "slug": "bench-01"}, "timestamp": "2026-03-26T09:00:00+01:00", '
    b'"data": {"course": {"id": "course-4711", "name": "Mathematics 101"}}}'
)

# One statement per batch: the events, their deliveries (one per webhook of the school), and
# one attempt per delivery. %(first)s..%(last)s number the batch's events.
GENERATE = """
WITH new_events AS (
    INSERT INTO events_event
        (id, school_id, type, data, occurred_at, created_at, idempotency_key, fanned_out_at,
         is_test)
    SELECT gen_random_uuid(),
           (%(school_ids)s::bigint[])[1 + g %% cardinality(%(school_ids)s::bigint[])],
           (%(types)s::text[])[1 + (g / cardinality(%(school_ids)s::bigint[]))
                               %% cardinality(%(types)s::text[])],
           jsonb_build_object(
               'course', jsonb_build_object(
                   'id', 'c-' || (abs(hashtext('c' || g)) %% 1000),
                   'name', (ARRAY['Mathematics', 'Physics', 'History', 'Biology', 'French'])
                           [1 + abs(hashtext('n' || g)) %% 5]
                           || ' ' || (100 + abs(hashtext('c' || g)) %% 1000 / 5)),
               'student', jsonb_build_object(
                   'id', 's-' || g, 'name', 'Student ' || g,
                   'email', 'student' || g || '@school.example'),
               'grade', g %% 100,
               'status', 'active'),
           at, at, NULL, at, false
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
         LATERAL (SELECT %(now)s::timestamptz - g * %(step)s * interval '1 millisecond' AS at) AS t
    RETURNING id, school_id, type, created_at
), new_deliveries AS (
    INSERT INTO deliveries_delivery
        (id, school_id, event_id, subscription_id, event_type, is_test, body, content_type,
         status, attempts, created_at, next_attempt_at, enqueued_at, leased_until, lease_token,
         last_attempt_at, last_response_status, last_error_kind, last_error, delivered_at,
         next_trigger)
    SELECT gen_random_uuid(), e.school_id, e.id, s.id, e.type, false, %(body)s,
           'application/json', outcome.status, 1, e.created_at, NULL, NULL, NULL, NULL,
           e.created_at,
           CASE WHEN outcome.status = 'failed' THEN 500 ELSE 200 END,
           CASE WHEN outcome.status = 'failed' THEN 'http_status' ELSE '' END,
           CASE WHEN outcome.status = 'failed' THEN 'The receiver answered 500 Reply.' ELSE ''
           END,
           CASE WHEN outcome.status = 'failed' THEN NULL ELSE e.created_at END,
           'automatic'
    FROM new_events AS e
    JOIN subscriptions_subscription AS s
      ON s.school_id = e.school_id AND s.id = ANY(%(subscription_ids)s::uuid[])
    CROSS JOIN LATERAL (
        SELECT CASE WHEN abs(hashtext(e.id::text || s.id::text)) %% 10000
                         < %(failed_share)s * 10000
                    THEN 'failed' ELSE 'delivered' END AS status
    ) AS outcome
    RETURNING id, subscription_id, created_at, status, last_response_status, last_error_kind,
              last_error
)
INSERT INTO deliveries_deliveryattempt
    (delivery_id, number, trigger, started_at, duration_ms, request_url, request_headers,
     response_status, response_headers, response_body, response_body_truncated, error_kind,
     error_message)
SELECT d.id, 1, 'automatic', d.created_at, 20 + (random() * 200)::int,
       'https://bench-receiver.example.org/hooks',
       '{"Content-Type": "application/json", "Authorization": "[redacted]"}'::jsonb,
       d.last_response_status, '{"Content-Type": "application/json"}'::jsonb,
       CASE WHEN d.status = 'failed' THEN 'database is down' ELSE '{"ok": true}' END,
       false, d.last_error_kind, d.last_error
FROM new_deliveries AS d
"""


class Command(BaseCommand):
    help = "Add synthetic events, deliveries and attempts (bench schools) for measuring the admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=1_000_000, help="Deliveries to add.")
        parser.add_argument("--schools", type=int, default=20)
        parser.add_argument("--webhooks", type=int, default=5, help="Webhooks per school.")
        parser.add_argument("--days", type=float, default=30.0, help="Spread over this many days.")
        parser.add_argument("--batch", type=int, default=100_000, help="Deliveries per batch.")
        parser.add_argument("--failed-share", type=float, default=0.05)

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("deliveries_generate needs PostgreSQL.")
        problems = [
            f"--{name.replace('_', '-')} must be at least {least} (got {options[name]})."
            for name, least in (
                ("count", 1),
                ("schools", 1),
                ("webhooks", 1),
                ("batch", 1),
            )
            if options[name] < least
        ]
        if not options["days"] > 0:
            problems.append(f"--days must be more than 0 (got {options['days']}).")
        if not 0 <= options["failed_share"] <= 1:
            problems.append(f"--failed-share must be from 0 to 1 (got {options['failed_share']}).")
        if problems:
            raise CommandError(" ".join(problems))
        started = time.monotonic()
        subscriptions = self._subscriptions(options["schools"], options["webhooks"])
        school_ids = sorted({subscription.school_id for subscription in subscriptions})
        per_event = options["webhooks"]
        events = -(-options["count"] // per_event)
        types = list(
            EventType.objects.filter(deprecated=False).order_by("key").values_list("key", flat=True)
        )
        step_ms = options["days"] * 86_400_000 / max(events, 1)
        now = timezone.now()
        batch_events = max(1, options["batch"] // per_event)
        with connection.cursor() as cursor:
            for first in range(0, events, batch_events):
                last = min(events, first + batch_events) - 1
                with transaction.atomic():
                    cursor.execute(
                        GENERATE,
                        {
                            "school_ids": school_ids,
                            "subscription_ids": [s.pk for s in subscriptions],
                            "types": types,
                            "first": first,
                            "last": last,
                            "now": now,
                            "step": step_ms,
                            "body": BODY,
                            "failed_share": options["failed_share"],
                        },
                    )
                self.stdout.write(f"  {(last + 1) * per_event:>9,} deliveries")
            for table in ("events_event", "deliveries_delivery", "deliveries_deliveryattempt"):
                cursor.execute(f"ANALYZE {table}")  # the list's estimated count reads it
        self.stdout.write(
            f"Added {events * per_event:,} deliveries ({events:,} events) to "
            f"{len(subscriptions)} webhooks of {len(school_ids)} schools in "
            f"{time.monotonic() - started:.1f} s."
        )

    def _subscriptions(self, schools: int, per_school: int) -> list[Subscription]:
        """The bench schools and their webhooks, created when missing (saved as they are: the
        bench receiver's address is never resolved or contacted)."""
        subscriptions = []
        with transaction.atomic():
            for number in range(1, schools + 1):
                school, _ = School.objects.get_or_create(
                    slug=f"bench-{number:02d}",
                    defaults={"name": f"Bench school {number:02d}", "timezone": "Europe/Paris"},
                )
                for index in range(1, per_school + 1):
                    subscription, created = Subscription.objects.get_or_create(
                        school=school,
                        name=f"Bench webhook {index}",
                        defaults={
                            "url": f"https://bench-receiver.example.org/hooks/{index}",
                            "topics": ["*"],
                        },
                    )
                    if created:
                        SigningSecret.objects.create(
                            subscription=subscription,
                            secret_encrypted=secret_encrypt(signing_secret_generate()),
                        )
                    subscriptions.append(subscription)
        return subscriptions
