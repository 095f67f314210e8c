"""A webhook moved to a new URL while attempts to its old one are in flight: what the old
receiver answers afterwards is recorded, but says nothing of the new one (README, "Dead
endpoints": a new URL starts the webhook afresh)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from deliveries.models import CircuitState, DeliveryAttempt, EndpointState
from deliveries.services import deliveries_attempt
from subscriptions.models import Subscription
from subscriptions.services import subscription_update
from tests.deliveries.factories import deliveries_published
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db(transaction=True)


def _moved_while_in_flight(receiver, webhook, ids: list[str], in_flight: int) -> None:
    """Attempt ``ids`` on another connection (a worker) and, once ``in_flight`` requests reached
    the old URL, move the webhook to /new (another request); return when the attempts are
    recorded."""

    def worker() -> None:
        try:
            deliveries_attempt(delivery_ids=ids)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    receiver.wait_for(in_flight, path="/old")
    subscription_update(subscription=webhook, url=receiver.url("/new"))
    thread.join(30)
    assert not thread.is_alive()


def test_a_410_from_the_old_url_after_the_move_does_not_disable_the_webhook(school, receiver):
    # Given a webhook whose old receiver answers 410 Gone, slowly
    receiver.script("/old", default=Reply(status=410, delay_seconds=1.0))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/old"), topics=["*"])
    ids = deliveries_published(school, 1)

    # When the webhook is moved to a new URL while that request is in flight
    _moved_while_in_flight(receiver, webhook, ids, in_flight=1)

    # Then the attempt is recorded against the URL it went to, and the webhook, which now
    # sends elsewhere, stays on
    [attempt] = DeliveryAttempt.objects.filter(delivery_id=ids[0])
    assert (attempt.request_url, attempt.response_status) == (receiver.url("/old"), 410)
    stored = Subscription.objects.get(pk=webhook.pk)
    assert (stored.is_active, stored.disabled_reason) == (True, "")


def test_timeouts_of_the_old_url_after_the_move_do_not_open_the_new_ones_circuit(
    school, receiver, settings
):
    # Given a webhook whose old receiver hangs past the attempts' deadline, and a circuit
    # breaker that opens after 2 network failures in a row
    settings.WEBHOOKS_CIRCUIT_FAILURES = 2
    settings.WEBHOOKS_TIMEOUT_SECONDS = 1
    receiver.script("/old", default=Reply(status=200, delay_seconds=3.0))
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/old"), topics=["*"], max_concurrency=10
    )
    ids = deliveries_published(school, 3)

    # When the webhook is moved to a new URL while 3 requests to the old one are in flight
    _moved_while_in_flight(receiver, webhook, ids, in_flight=3)

    # Then their timeouts are recorded, but the new URL's circuit counted none of them
    attempts = DeliveryAttempt.objects.filter(delivery_id__in=ids)
    assert [a.error_kind for a in attempts] == [ErrorKind.TIMEOUT] * 3
    state = EndpointState.objects.filter(pk=webhook.pk).first()
    assert state is None or (state.circuit_state, state.consecutive_failures) == (
        CircuitState.CLOSED,
        0,
    )


def test_a_probe_of_the_old_url_ending_after_the_move_leaves_the_new_one_probed_at_once(
    school, receiver, settings
):
    # Given a webhook whose circuit is open, and whose probe goes to its old receiver, which
    # hangs past the attempt's deadline
    settings.WEBHOOKS_TIMEOUT_SECONDS = 1
    settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = 30
    receiver.script("/old", default=Reply(status=200, delay_seconds=3.0))
    webhook = SubscriptionFactory(school=school, url=receiver.url("/old"), topics=["*"])
    ids = deliveries_published(school, 1)
    EndpointState.objects.create(
        subscription=webhook,
        circuit_state=CircuitState.OPEN,
        consecutive_failures=5,
        opened_count=1,
        probe_at=timezone.now() - dt.timedelta(seconds=1),
    )

    # When the webhook is moved to a new URL while that probe is in flight
    _moved_while_in_flight(receiver, webhook, ids, in_flight=1)

    # Then the probe's timeout does not open the circuit for another cooldown: the new URL is
    # probed at once (README: "an open circuit probes at once")
    state = EndpointState.objects.get(pk=webhook.pk)
    assert state.circuit_state == CircuitState.OPEN  # the new receiver has not answered yet
    assert state.probe_at is not None
    assert state.probe_at <= timezone.now()
