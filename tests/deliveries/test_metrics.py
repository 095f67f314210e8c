"""GET /metrics: who may read it, the state gauges read from the database, and the counters an
attempt made in this process moves (tests/integration/test_metrics.py: a real worker's)."""

import datetime as dt
import logging
import re
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from deliveries import metrics, selectors
from deliveries.models import (
    CircuitState,
    Delivery,
    DeliveryStatus,
    EndpointState,
    Heartbeat,
)
from deliveries.services import delivery_attempt, event_fan_out
from deliveries.services.claim import ClaimOutcome
from deliveries.services.dispatch import Dispatcher
from events.models import Event
from events.services import event_publish
from tests.deliveries.factories import delivery_create
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

TOKEN = "a-metrics-token-only-for-tests"


def scrape(client, token=TOKEN, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get("/metrics", **headers)


def samples(response):
    """{(sample name, sorted label pairs): value} of a scrape."""
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(found, name, **labels):
    """A sample's value, 0 when the series does not exist (yet)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


# --- Who may read it ------------------------------------------------------------------------


def test_without_a_token_or_networks_configured_metrics_do_not_exist(client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = ""
    settings.WEBHOOKS_METRICS_ALLOWED_NETWORKS = []

    response = scrape(client)

    assert response.status_code == 404
    assert b"webhooks_" not in response.content


def test_with_a_token_a_request_without_it_or_with_another_is_refused(client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN

    missing = scrape(client, token=None)
    wrong = scrape(client, token=TOKEN + "x")
    basic = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    right = scrape(client)

    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert refused.content == b"Unauthorized"
    assert right.status_code == 200
    assert right["Content-Type"].startswith("text/plain; version=")
    assert right["Cache-Control"] == "no-store"
    assert b"# TYPE webhooks_deliveries_due gauge" in right.content


def test_with_networks_only_an_address_in_them_may_read(client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = ""
    settings.WEBHOOKS_METRICS_ALLOWED_NETWORKS = ["10.0.5.0/24", "2001:db8::/32"]

    inside = scrape(client, token=None, REMOTE_ADDR="10.0.5.17")
    inside_v6 = scrape(client, token=None, REMOTE_ADDR="2001:db8::7")
    mapped = scrape(client, token=None, REMOTE_ADDR="::ffff:10.0.5.17")
    outside = scrape(client, token=None, REMOTE_ADDR="10.0.6.1")
    # Without trusted proxies X-Forwarded-For is anyone's to write: it is not read.
    spoofed = scrape(
        client, token=None, REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="10.0.5.17"
    )

    assert [r.status_code for r in (inside, inside_v6, mapped)] == [200, 200, 200]
    assert (outside.status_code, outside.content) == (403, b"Forbidden")
    assert spoofed.status_code == 403


def test_behind_trusted_proxies_the_address_the_proxy_saw_is_checked(client, settings):
    settings.WEBHOOKS_METRICS_ALLOWED_NETWORKS = ["10.0.5.0/24"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    allowed = scrape(
        client, token=None, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 10.0.5.9"
    )
    refused = scrape(
        client, token=None, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.5.9, 6.6.6.6"
    )

    assert allowed.status_code == 200
    assert refused.status_code == 403


def test_with_a_token_and_networks_both_must_pass(client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    settings.WEBHOOKS_METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    both = scrape(client, REMOTE_ADDR="127.0.0.1")
    token_only = scrape(client, REMOTE_ADDR="192.0.2.1")
    network_only = scrape(client, token=None, REMOTE_ADDR="127.0.0.1")

    assert [both.status_code, token_only.status_code, network_only.status_code] == [200, 403, 401]


def test_metrics_answer_get_only(client, settings):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN

    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405


# --- The state, from the database -----------------------------------------------------------


def test_the_state_gauges_report_the_database_exactly(client, settings, school):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    now = timezone.now()
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    other = SchoolFactory(slug="college-jean-moulin")
    failing_long = SubscriptionFactory(school=school, failing_since=ago(600))
    SubscriptionFactory(school=school, failing_since=ago(120))
    SubscriptionFactory(school=school)
    SubscriptionFactory(school=school, is_active=False, failing_since=ago(9000))
    SubscriptionFactory(school=other, failing_since=ago(3600))
    pending = DeliveryStatus.PENDING
    # Sent to the workers and not taken: never claimed (2), or claimed by a worker whose lease
    # ran out.
    delivery_create(failing_long, status=pending, next_attempt_at=ago(120), enqueued_at=ago(120))
    delivery_create(failing_long, status=pending, next_attempt_at=ago(5), enqueued_at=ago(5))
    delivery_create(
        failing_long,
        status=pending,
        next_attempt_at=ago(30),
        enqueued_at=ago(30),
        leased_until=ago(1),
    )
    # Not for a worker to take: without a message (waiting for its webhook, or for the sweeper,
    # whose heartbeat is its own gauge), being attempted, not due yet, a Send Test, final.
    delivery_create(failing_long, status=pending, next_attempt_at=ago(900), enqueued_at=None)
    delivery_create(
        failing_long,
        status=pending,
        next_attempt_at=ago(300),
        enqueued_at=ago(300),
        leased_until=ago(-60),
    )
    delivery_create(failing_long, status=pending, next_attempt_at=ago(-60), enqueued_at=ago(-60))
    delivery_create(
        failing_long, status=pending, next_attempt_at=ago(400), enqueued_at=ago(400), is_test=True
    )
    delivery_create(failing_long, status=DeliveryStatus.DELIVERED)
    for seconds in (50, 10):  # published, not fanned out yet
        Event.objects.create(
            school=school,
            type_id="course.created",
            data={},
            occurred_at=now,
            created_at=ago(seconds),
        )
    for name, seconds in (("beat", 3), ("sweeper", 4)):
        Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": ago(seconds)})

    found = samples(scrape(client))
    after = timezone.now()

    def age(name, seconds, **labels):
        measured = value(found, name, **labels)
        assert seconds <= measured <= seconds + (after - now).total_seconds() + 0.01, name
        return True

    assert value(found, "webhooks_deliveries_due") == 3
    assert age("webhooks_deliveries_due_oldest_age_seconds", 120)
    assert value(found, "webhooks_events_awaiting_fan_out") == 2
    assert age("webhooks_events_awaiting_fan_out_oldest_age_seconds", 50)
    assert value(found, "webhooks_webhooks", state="healthy") == 1
    assert value(found, "webhooks_webhooks", state="failing") == 3
    assert value(found, "webhooks_webhooks", state="disabled") == 1
    assert value(found, "webhooks_failing_webhooks", school="lycee-victor-hugo") == 2
    assert value(found, "webhooks_failing_webhooks", school="college-jean-moulin") == 1
    assert age("webhooks_failing_streak_seconds", 600, school="lycee-victor-hugo")
    assert age("webhooks_failing_streak_seconds", 3600, school="college-jean-moulin")
    assert age("webhooks_beat_last_tick_age_seconds", 3)
    assert age("webhooks_sweeper_last_run_age_seconds", 4)


def _waiting_scraped(found):
    """({reason: count}, {reason: oldest age}) of a scrape's waiting gauges."""
    counts, ages = {}, {}
    for (name, labels), number in found.items():
        if name == "webhooks_deliveries_waiting":
            counts[dict(labels)["reason"]] = number
        elif name == "webhooks_deliveries_waiting_oldest_age_seconds":
            ages[dict(labels)["reason"]] = number
    return counts, ages


def _waiting_read_by_the_orm(now):
    """What the embedded database's reading (``_waiting_rows``) makes of the same rows."""
    rows = selectors._waiting_rows(now)
    return (
        {reason: count for reason, count, _oldest in rows if count},
        {reason: (now - oldest).total_seconds() for reason, count, oldest in rows if oldest},
    )


def test_deliveries_waiting_by_design_are_counted_by_their_first_reason(client, settings, school):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    now = timezone.now()
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    pending = DeliveryStatus.PENDING
    paused = SubscriptionFactory(school=school, is_active=False, paused_at=ago(50))
    broken = SubscriptionFactory(school=school, failing_since=ago(600))
    disabled_broken = SubscriptionFactory(school=school, is_active=False)
    catching_up_broken = SubscriptionFactory(school=school, catching_up_since=ago(20))
    probing = SubscriptionFactory(school=school, failing_since=ago(600))
    disabled = SubscriptionFactory(school=school, is_active=False, catching_up_since=ago(20))
    catching_up = SubscriptionFactory(school=school, catching_up_since=ago(20))
    busy = SubscriptionFactory(school=school)
    for webhook in (broken, disabled_broken, catching_up_broken):
        EndpointState.objects.create(
            subscription=webhook, circuit_state=CircuitState.OPEN, circuit_changed_at=ago(300)
        )
    EndpointState.objects.create(subscription=probing, circuit_state=CircuitState.HALF_OPEN)
    EndpointState.objects.create(subscription=busy, circuit_state=CircuitState.CLOSED)

    def waiting(webhook, seconds_due, **fields):
        fields = {"enqueued_at": None, **fields}
        delivery_create(webhook, status=pending, next_attempt_at=ago(seconds_due), **fields)

    waiting(paused, 60)  # the pause holds them, disabled or not
    waiting(paused, -3600)  # a retry due later is held by the pause all the same
    waiting(broken, 300)
    waiting(broken, -30)  # not due yet, and its circuit open: it waits for the probe too
    waiting(disabled_broken, 310)  # disabled first: failed at its concurrency, no probes
    waiting(catching_up_broken, 320)  # the catch-up waits for the probe
    waiting(probing, 200)
    waiting(disabled, 70)  # disabled first, then catching up
    waiting(catching_up, 40)
    waiting(busy, -90)  # a retry, for the sweeper when it is due
    waiting(busy, 25)
    waiting(busy, 15)
    # Not waiting by design: with a message (for the workers), in flight (a fan-out's own
    # deliveries and the deliveries taken up have no message), a Send Test in flight, final.
    waiting(busy, 500, enqueued_at=ago(500))
    waiting(busy, 400, leased_until=ago(-60))
    waiting(busy, 450, leased_until=ago(-60), is_test=True)
    delivery_create(busy, status=DeliveryStatus.DELIVERED)

    found = samples(scrape(client))
    after = timezone.now()

    counts, ages = _waiting_scraped(found)
    expected_counts = {
        "paused": 2,
        "circuit_open": 4,
        "disabled": 2,
        "catching_up": 1,
        "scheduled": 1,
        "limit": 2,
    }
    expected_ages = {
        "paused": 60,
        "circuit_open": 320,
        "disabled": 310,
        "catching_up": 40,
        "limit": 25,
    }
    assert counts == expected_counts
    slack = (after - now).total_seconds() + 0.01
    for reason, seconds in expected_ages.items():
        assert seconds <= ages[reason] <= seconds + slack, reason
    assert ages["scheduled"] == 0  # nothing in it is due
    assert value(found, "webhooks_deliveries_due") == 1  # the one with a message
    # The embedded database's reading of the same rows agrees.
    orm_counts, orm_ages = _waiting_read_by_the_orm(now)
    assert orm_counts == expected_counts
    assert {reason: round(age) for reason, age in orm_ages.items()} == expected_ages


def test_each_webhook_is_counted_up_to_the_cap_whatever_the_others_hold(
    client, settings, school, monkeypatch
):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    monkeypatch.setattr(selectors, "BACKLOG_COUNT_CAP", 3)
    now = timezone.now()
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    paused = SubscriptionFactory(school=school, paused_at=ago(50))
    busy = SubscriptionFactory(school=school)
    for seconds in (100, 90, 80, 70, 60):  # more than the cap, the oldest first
        delivery_create(
            paused, status=DeliveryStatus.PENDING, next_attempt_at=ago(seconds), enqueued_at=None
        )
    for seconds in (30, 20):
        delivery_create(
            busy, status=DeliveryStatus.PENDING, next_attempt_at=ago(seconds), enqueued_at=None
        )

    counts, ages = _waiting_scraped(samples(scrape(client)))

    # The paused webhook's five stop at the cap; the busy one's two are counted all the same.
    assert counts["paused"] == 3
    assert counts["limit"] == 2
    assert 100 <= ages["paused"] < 101
    assert 30 <= ages["limit"] < 31
    orm_counts, orm_ages = _waiting_read_by_the_orm(now)
    assert orm_counts == {"paused": 3, "limit": 2}
    assert {reason: round(age) for reason, age in orm_ages.items()} == {"paused": 100, "limit": 30}


def test_an_empty_deployment_reports_no_backlog_and_liveness_never_seen(client, settings, db):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    Heartbeat.objects.filter(name__in=["beat", "sweeper"]).delete()

    found = samples(scrape(client))

    assert value(found, "webhooks_deliveries_due") == 0
    assert value(found, "webhooks_deliveries_due_oldest_age_seconds") == 0
    for reason in selectors.WAITING_REASONS:  # every reason is reported, at zero
        assert found[("webhooks_deliveries_waiting", (("reason", reason),))] == 0
    assert value(found, "webhooks_events_awaiting_fan_out_oldest_age_seconds") == 0
    assert value(found, "webhooks_beat_last_tick_age_seconds") == float("inf")
    assert value(found, "webhooks_sweeper_last_run_age_seconds") == float("inf")
    assert not [key for key in found if key[0] == "webhooks_failing_webhooks"]


def test_failure_streaks_name_the_longest_schools_and_sum_the_rest(
    client, settings, catalog, monkeypatch
):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    monkeypatch.setattr(metrics, "FAILING_SCHOOLS_SHOWN", 2)
    now = timezone.now()
    for index, minutes in enumerate([5, 50, 500, 40, 4]):
        school = SchoolFactory(slug=f"school-{index}")
        SubscriptionFactory(school=school, failing_since=now - dt.timedelta(minutes=minutes))

    found = samples(scrape(client))

    failing = {
        dict(labels)["school"]: number
        for (name, labels), number in found.items()
        if name == "webhooks_failing_webhooks"
    }
    streaks = {
        dict(labels)["school"]: number
        for (name, labels), number in found.items()
        if name == "webhooks_failing_streak_seconds"
    }
    assert failing == {"school-2": 1, "school-1": 1, "(other)": 3}
    assert set(streaks) == {"school-2", "school-1", "(other)"}
    assert 40 * 60 <= streaks["(other)"] < 40 * 60 + 5


def test_a_worker_counts_as_alive_while_its_heartbeat_is_recent(settings):
    settings.WEBHOOKS_HEARTBEAT_SECONDS = 10
    now = timezone.now()
    heartbeats = {
        "beat": now,
        "worker:a@host-1": now - dt.timedelta(seconds=5),
        "worker:b@host-2": now - dt.timedelta(seconds=29),
        "worker:c@host-3": now - dt.timedelta(seconds=31),
    }

    assert metrics.workers_alive(heartbeats, now=now) == 2


# --- Counters moved by attempts made here ---------------------------------------------------


def test_an_attempt_moves_the_counters_and_histograms_by_one(client, settings, school, receiver):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    SubscriptionFactory(school=school, url=receiver.url("/down"), topics=["*"])
    receiver.script("/down", Reply(status=500))
    before = samples(scrape(client))

    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    delivery_attempt(delivery_id=delivery_id)

    after = samples(scrape(client))
    labels = {"trigger": "automatic", "outcome": "retrying", "error_kind": "http_status"}

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("webhooks_delivery_attempts_total", **labels) == 1
    assert (
        sum(
            after[key] - before.get(key, 0.0)
            for key in after
            if key[0] == "webhooks_delivery_attempts_total"
        )
        == 1
    )
    assert moved("webhooks_delivery_attempt_duration_seconds_count", outcome="retrying") == 1
    assert moved("webhooks_delivery_first_attempt_delay_seconds_count") == 1
    assert moved("webhooks_event_fan_out_delay_seconds_count") == 1
    assert Delivery.objects.get(pk=delivery_id).status == DeliveryStatus.PENDING


def test_each_attempt_is_logged_with_its_identifiers_and_outcome(school, receiver, caplog):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)

    with caplog.at_level(logging.INFO, logger="deliveries.attempts"):
        attempt = delivery_attempt(delivery_id=delivery_id)

    [record] = [r for r in caplog.records if r.name == "deliveries.attempts"]
    fields = {
        key: getattr(record, key)
        for key in (
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
        )
    }
    assert fields == {
        "delivery_id": str(delivery_id),
        "webhook_id": f"msg_{delivery_id.hex}",
        "school": "lycee-victor-hugo",
        "school_id": school.id,
        "webhook": str(subscription.id),
        "event_type": "course.created",
        "attempt": 1,
        "trigger": "automatic",
        "outcome": "delivered",
        "error_kind": "",
        "status": 200,
    }
    assert record.duration_ms == attempt.duration_ms
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        f"Attempt 1 of delivery {delivery_id} (msg_{delivery_id.hex}) to webhook "
        f"{subscription.id} of lycee-victor-hugo: delivered, HTTP 200 in {attempt.duration_ms} ms"
    )


def test_the_readme_documents_exactly_the_metrics_served(client, settings, school, receiver):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    SubscriptionFactory(school=school, url=receiver.url("/hook"), topics=["*"])
    SubscriptionFactory(school=school, failing_since=timezone.now())
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id, _] = event_fan_out(event_id=event.id)
    delivery_attempt(delivery_id=delivery_id)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    operations = readme.split("## Operations", 1)[1].split("### What to alert on", 1)[0]

    served = {
        family.name
        for family in text_string_to_metric_families(scrape(client).content.decode())
        if family.name.startswith("webhooks_")
    }
    documented = {
        name.removesuffix("_total") for name in re.findall(r"`(webhooks_[a-z_]+)", operations)
    }

    assert served == documented


def test_deliveries_held_for_the_failing_receivers_share_are_counted(client, settings, caplog):
    """Each claim's count of deliveries it held back goes to the counter; the warning that
    says so is logged once a minute at most."""
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    before = value(samples(scrape(client)), "webhooks_failing_share_held_total")
    sending = Dispatcher(slots=2)
    try:
        with caplog.at_level(logging.WARNING, logger="deliveries.services.dispatch"):
            sending._failing_full_log(ClaimOutcome(failing_held=2))
            sending._failing_full_log(ClaimOutcome(failing_held=3))
            sending._failing_full_log(ClaimOutcome())
    finally:
        sending.stop(timeout=1)

    after = value(samples(scrape(client)), "webhooks_failing_share_held_total")
    assert after - before == 5
    warnings = [r for r in caplog.records if "taken their share" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 more of their deliveries wait" in warnings[0].getMessage()
