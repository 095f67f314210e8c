"""A database dump after real deliveries holds no webhook secret in clear.

Webhooks with every kind of secret (basic auth, a header secret by its name, one marked secret,
an API key header, a URL token) deliver through a real Celery worker to a receiver that echoes
each request back (headers and body, and the headers again in its answer), fail against a
closed port, and are sent a Send Test from this process; then ``pg_dump`` dumps the test
database and every secret is looked for in every form an echo returns it in, in every table
(the webhooks' own settings included).
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from django.db import connection, transaction
from django.db.models import Count, Q

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import delivery_test_send
from events.services import event_publish
from subscriptions.services import subscription_update
from tests.subscriptions.factories import EVERY_SECRET, webhook_with_every_secret
from webhook_engine.redaction import secret_forms

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _dump() -> str:
    database = connection.settings_dict
    command = ["pg_dump", "--data-only", "--no-owner", "-h", database["HOST"] or "127.0.0.1"]
    command += ["-p", str(database["PORT"] or 5432), "-U", database["USER"], database["NAME"]]
    env = {"PGPASSWORD": database.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=60, env=env
    ).stdout


def _tables_holding(dump: str, secret: str) -> list[str]:
    """The tables (``COPY public.<table>`` sections) whose rows contain ``secret``."""
    tables = []
    for match in re.finditer(r"^COPY public\.(\w+) .*?^\\\.$", dump, re.MULTILINE | re.DOTALL):
        if secret in match.group(0):
            tables.append(match.group(1))
    return tables


def test_a_database_dump_after_real_deliveries_holds_no_secret_in_clear(
    worker_process, school, receiver
):
    echo = webhook_with_every_secret(school=school, receiver=receiver, name="Echo")
    down = webhook_with_every_secret(school=school, receiver=receiver, name="Down")
    down = subscription_update(
        subscription=down, url=f"http://127.0.0.1:9/down?token={EVERY_SECRET['URL query token']}"
    )
    with transaction.atomic():
        for number in range(3):
            event_publish(
                school=school, type="course.created", data={"course": {"id": f"c{number}"}}
            )
    delivery_test_send(subscription=echo, event_type="student.signed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # One read: counted apart, the pending ones could be read before the fan-out's commit
        # and the total after it.
        counts = Delivery.objects.aggregate(
            total=Count("pk"), pending=Count("pk", filter=Q(status=DeliveryStatus.PENDING))
        )
        if counts == {"total": 7, "pending": 0}:
            break
        time.sleep(0.1)
    statuses = sorted(Delivery.objects.values_list("subscription__name", "status"))

    dump = _dump()

    assert statuses == [("Down", "failed")] * 3 + [("Echo", "delivered")] * 4
    assert len(receiver.received()) == 4  # each echoed its request with every secret in it
    assert DeliveryAttempt.objects.filter(delivery__subscription=down).count() >= 3
    assert "Basic [redacted]" in dump  # the echoed Authorization, kept redacted
    found = {
        kind: sorted(
            {table for form in secret_forms([secret]) for table in _tables_holding(dump, form)}
        )
        for kind, secret in EVERY_SECRET.items()
    }
    assert found == {kind: [] for kind in EVERY_SECRET}
