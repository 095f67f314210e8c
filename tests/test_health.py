import datetime as dt
import logging

import pytest
from django.utils import timezone

from deliveries.models import CircuitState, Delivery, EndpointState, Heartbeat
from deliveries.services import deliveries_sweep, event_fan_out
from events.services import event_publish
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_health_is_ok_when_the_database_and_the_broker_answer(client, catalog):
    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "oldest_due_delivery_seconds": 0.0,
        "events_awaiting_fan_out": 0,
        "broker": "ok",
        "status": "ok",
    }


def _delivery_not_taken(school, *, since):
    """A delivery due, and its message sent, at ``since``, that no worker took."""
    SubscriptionFactory(school=school)
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=since, enqueued_at=since)
    return delivery_id


def test_health_is_503_when_due_deliveries_are_not_picked_up(client, school, settings):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    _delivery_not_taken(school, since=timezone.now() - dt.timedelta(minutes=10))

    response = client.get("/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["deliveries"] == "due deliveries are not being picked up: are workers running?"
    assert body["oldest_due_delivery_seconds"] >= 600


def test_deliveries_waiting_for_a_dead_or_busy_receiver_are_not_the_deployments_backlog(
    client, school, settings
):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    dead = SubscriptionFactory(school=school, url="http://127.0.0.1:9/dead")
    busy = SubscriptionFactory(school=school, url="http://127.0.0.1:9/slow", max_concurrency=1)
    ids = []
    for number in range(3):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += event_fan_out(event_id=event.id)
    now = timezone.now()
    an_hour_ago = now - dt.timedelta(hours=1)
    # For an hour: the dead receiver's circuit open, its deliveries waiting for the probe; the
    # slow one's deliveries waiting behind its attempt in flight.
    EndpointState.objects.create(
        subscription=dead,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=an_hour_ago,
        probe_at=now + dt.timedelta(minutes=10),
    )
    Delivery.objects.filter(pk__in=ids).update(next_attempt_at=an_hour_ago, enqueued_at=None)
    in_flight = Delivery.objects.filter(subscription=busy).first()
    Delivery.objects.filter(pk=in_flight.pk).update(
        enqueued_at=now, leased_until=now + dt.timedelta(minutes=1)
    )

    deliveries_sweep()  # the sweeper leaves them to the probe and to the attempt in flight
    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json()["oldest_due_delivery_seconds"] == 0.0
    re_driven = Delivery.objects.filter(pk__in=ids, enqueued_at__isnull=False)
    assert re_driven.exclude(pk=in_flight.pk).count() == 0


def test_health_stays_503_while_workers_take_messages_without_sending(client, school, settings):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    ten_minutes_ago = timezone.now() - dt.timedelta(minutes=10)
    delivery_id = _delivery_not_taken(school, since=ten_minutes_ago)

    deliveries_sweep()  # it sends the message again; a broken deploy takes it and sends nothing
    response = client.get("/health/")

    assert Delivery.objects.get(pk=delivery_id).enqueued_at > ten_minutes_ago
    assert response.status_code == 503
    assert response.json()["oldest_due_delivery_seconds"] >= 600


def test_health_is_503_when_the_sweeper_has_not_run(client, catalog, settings):
    settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS = 60
    Heartbeat.objects.update_or_create(
        name=Heartbeat.SWEEPER, defaults={"seen_at": timezone.now() - dt.timedelta(minutes=10)}
    )

    response = client.get("/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["sweeper"] == "the sweeper has not run: is beat running?"
    assert body["sweeper_last_run_seconds"] >= 600
    deliveries_sweep()
    assert client.get("/health/").status_code == 200


def test_health_answers_a_probe_by_address_whatever_the_allowed_hosts(
    client, catalog, settings, caplog
):
    """Load balancers and monitors probe an instance by its address (Host: 10.0.0.5:8000, or
    127.0.0.1:8000 on the host itself, where the web unit listens), not by the site's name:
    with the README's DJANGO_ALLOWED_HOSTS they got a 400 and an ERROR line per probe, so the
    deployment looked down. /health/ builds no URL from the Host header; other pages still
    refuse a host that is not allowed."""
    settings.ALLOWED_HOSTS = ["webhooks.school.example"]
    settings.SECURE_SSL_REDIRECT = True  # DJANGO_HTTPS=true: probes come over plain HTTP

    with caplog.at_level(logging.WARNING):
        probes = [client.get("/health/", HTTP_HOST=host) for host in ("10.0.0.5:8000", "127.0.0.1")]

    assert [probe.status_code for probe in probes] == [200, 200]
    assert probes[0].json()["status"] == "ok"
    assert caplog.records == []
    assert client.get("/admin/login/", HTTP_HOST="10.0.0.5:8000").status_code == 400
