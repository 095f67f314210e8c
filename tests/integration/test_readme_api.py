"""The curl examples of the README's "Use the API" section, run verbatim against a live server
with a real worker: the webhook is created, the event published, delivered, listed, retriggered."""

import csv
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from django.db import transaction

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from events.models import Event
from events.services import event_publish, event_types_sync
from schools.services import api_key_create, platform_key_create
from tests.schools.factories import SchoolFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = re.compile(r"<!-- api-example: (?P<name>[^>]+) -->\n```sh\n(?P<script>.*?)```", re.S)


def _examples() -> dict[str, str]:
    return {m["name"].strip(): m["script"] for m in EXAMPLE.finditer(README.read_text())}


def _run(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_the_readme_curl_examples_work_as_written(live_server, worker_process, receiver):
    event_types_sync()
    school = SchoolFactory(slug="lycee-victor-hugo", name="Lycée Victor Hugo")
    _, school_key = api_key_create(school=school, name="README")
    _, platform_key = platform_key_create(name="README")
    env = {
        **os.environ,
        "WEBHOOKS": live_server.url,
        "SCHOOL_KEY": school_key,
        "PLATFORM_KEY": platform_key,
        "RECEIVER": receiver.url("/readme"),
        "NO_PROXY": "*",
    }
    examples = _examples()
    assert list(examples) == [
        "create a webhook",
        "publish an event",
        "list deliveries",
        "retrigger the newest delivery",
        "replay a webhook's events",
        "export the deliveries that mention a course",
        "pause a webhook",
        "resume a webhook",
        "create a webhook with a payload filter",
    ]

    created = json.loads(_run(examples["create a webhook"], env))
    published = json.loads(_run(examples["publish an event"], env))
    receiver.wait_for(1, path="/readme")
    _wait(lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).exists())
    listed = json.loads(_run(examples["list deliveries"], env))
    retriggered = json.loads(_run(examples["retrigger the newest delivery"], env))
    receiver.wait_for(2, path="/readme")

    assert created["signing_secret"].startswith("whsec_")
    assert published["type"] == "course.created"
    [delivery] = listed["results"]
    assert (delivery["event"], delivery["status"]) == (published["id"], "delivered")
    assert retriggered == {"retriggered": True, "outcome": "queued"}
    _wait(lambda: DeliveryAttempt.objects.filter(trigger="manual").exists())
    first, second = receiver.received("/readme")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]

    counted, replayed = [
        json.loads(line) for line in _run(examples["replay a webhook's events"], env).splitlines()
    ]
    third = receiver.wait_for(3, path="/readme")[2]
    _wait(
        lambda: Delivery.objects.filter(replay_number=1, status=DeliveryStatus.DELIVERED).exists()
    )
    exported = list(
        csv.DictReader(
            io.StringIO(_run(examples["export the deliveries that mention a course"], env))
        )
    )

    assert counted == {"count": 1, "queued": 0, "dry_run": True, "max_events": 10000}
    assert replayed == {"count": 1, "queued": 1, "dry_run": False, "max_events": 10000}
    assert json.loads(third.body)["id"] == published["id"]
    assert third.headers["webhook-id"] != first.headers["webhook-id"]
    assert sorted((row["event_id"], row["replay_number"], row["state"]) for row in exported) == [
        (published["id"], "0", "delivered"),
        (published["id"], "1", "delivered"),
    ]

    env["WEBHOOK_ID"] = created["id"]
    paused = json.loads(_run(examples["pause a webhook"], env))
    assert paused["paused_at"] is not None
    assert paused["resume_at"] == "2030-09-01T05:00:00Z"
    with transaction.atomic():
        event_publish(school=school, type="course.created", data={"course": {"id": "held"}})
    _wait(lambda: Delivery.objects.filter(event__data__course__id="held").exists())
    time.sleep(0.5)
    assert len(receiver.received("/readme")) == 3  # held
    resumed = json.loads(_run(examples["resume a webhook"], env))
    assert (resumed["paused_at"], resumed["resume_at"]) == (None, None)
    receiver.wait_for(4, path="/readme")
    assert json.loads(receiver.received("/readme")[3].body)["data"]["course"]["id"] == "held"

    filtered = json.loads(_run(examples["create a webhook with a payload filter"], env))
    assert filtered["payload_filter"]["all"][0] == {"field": "group.id", "op": "eq", "value": 12}
    maths = {"course": {"id": "c-1", "name": "Mathematics 101"}, "group": {"id": 12}}
    other = {"course": {"id": "c-2", "name": "Mathematics 102"}, "group": {"id": 7}}
    published = [
        event_publish(school=school, type="course.created", data=data) for data in (maths, other)
    ]
    _wait(lambda: not Event.objects.filter(fanned_out_at__isnull=True).exists())
    to_filtered = Delivery.objects.filter(subscription_id=filtered["id"])
    assert list(to_filtered.values_list("event_id", flat=True)) == [published[0].id]
