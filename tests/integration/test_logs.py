"""WEBHOOKS_LOG_FORMAT=json with a real worker: a line per attempt with its identifiers, and no
secret of a webhook (signing secret, basic-auth password, custom header value) anywhere."""

import base64
import io
import json
import logging
import time
import uuid

import pytest
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from common.logging import JsonFormatter
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import delivery_test_send
from events.services import event_publish
from subscriptions.crypto import secret_encrypt
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIELDS = {
    "delivery_id",
    "webhook_id",
    "school",
    "school_id",
    "webhook",
    "event_type",
    "attempt",
    "trigger",
    "outcome",
    "error_kind",
    "status",
    "duration_ms",
}


def _attempt_lines(text):
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["logger"] == "deliveries.attempts":
                lines.append(entry)
    return lines


def _wait_until_final(queryset, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(queryset.all())  # a fresh query each time
        if rows and all(row.status != DeliveryStatus.PENDING for row in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError("deliveries still pending")


@pytest.fixture
def json_logs_here():
    """This process's log records at DEBUG, written by the JSON formatter to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_json_logs_carry_every_attempt_and_no_secret(
    own_worker, catalog, receiver, json_logs_here, caplog
):
    password = f"basic-password-{uuid.uuid4().hex}"
    api_key = f"api-key-value-{uuid.uuid4().hex}"
    worker = own_worker(WEBHOOKS_LOG_FORMAT="json", DJANGO_LOG_LEVEL="DEBUG")
    school = SchoolFactory(slug="lycee-json")
    secret_settings = {
        "school": school,
        "topics": ["*"],
        "basic_auth_enabled": True,
        "basic_auth_username": "crm",
        "basic_auth_password_encrypted": secret_encrypt(password),
        "custom_headers": {"X-Api-Key": api_key},
    }
    accepted = SubscriptionFactory(url=receiver.url("/ok"), **secret_settings)
    refused = SubscriptionFactory(url=receiver.url("/refused"), **secret_settings)
    receiver.script("/refused", default=Reply(status=401, body=b"bad credentials"))

    caplog.set_level(logging.DEBUG)
    with transaction.atomic():
        event = event_publish(school=school, type="course.created", data={"course": {"id": "c"}})
    test_attempt = delivery_test_send(subscription=accepted, event_type="course.created")
    rows = _wait_until_final(Delivery.objects.filter(event=event))
    worker.stop()  # every line written

    # The secrets were in use: the receiver got them and the signature verifies.
    credentials = base64.b64encode(f"crm:{password}".encode()).decode()
    [first] = receiver.received("/ok")[:1]
    assert first.headers["authorization"] == f"Basic {credentials}"
    assert first.headers["x-api-key"] == api_key
    Webhook(accepted.secret).verify(first.body, first.headers)
    secrets = [
        accepted.secret,
        accepted.secret.removeprefix("whsec_"),
        refused.secret,
        refused.secret.removeprefix("whsec_"),
        password,
        credentials,
        api_key,
    ]
    worker_log = worker.log()
    here = json_logs_here.getvalue() + caplog.text
    for secret in secrets:
        assert secret not in worker_log
        assert secret not in here

    # One line per attempt, from the worker, each with its identifiers and outcome.
    by_id = {str(row.pk): row for row in rows}
    lines = _attempt_lines(worker_log)
    assert {line["delivery_id"] for line in lines} == set(by_id)
    for line in lines:
        assert set(line) >= FIELDS
        row = by_id[line["delivery_id"]]
        assert line["webhook_id"] == f"msg_{row.pk.hex}"
        assert (line["school"], line["school_id"]) == ("lycee-json", school.id)
        assert line["webhook"] == str(row.subscription_id)
        assert isinstance(line["duration_ms"], int)
    ok = [line for line in lines if line["webhook"] == str(accepted.id)]
    assert [(x["attempt"], x["outcome"], x["status"], x["error_kind"]) for x in ok] == [
        (1, "delivered", 200, "")
    ]
    failed = [line for line in lines if line["webhook"] == str(refused.id)]
    assert [(x["attempt"], x["outcome"], x["status"], x["error_kind"]) for x in failed] == [
        (1, "retrying", 401, "http_status"),
        (2, "retrying", 401, "http_status"),
        (3, "retrying", 401, "http_status"),
        (4, "retrying", 401, "http_status"),
        (5, "failed", 401, "http_status"),
    ]
    # The Send Test ran here, in this process, and was logged here.
    [sent_here] = _attempt_lines(json_logs_here.getvalue())
    assert (sent_here["delivery_id"], sent_here["trigger"], sent_here["outcome"]) == (
        str(test_attempt.delivery_id),
        "test",
        "delivered",
    )
