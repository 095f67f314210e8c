"""The delivery log in the admin: filters, search, the attempt details, retrigger."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common import admin_lists
from deliveries.models import AttemptTrigger, Delivery, DeliveryStatus
from tests.deliveries.factories import delivery_create, event_create
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db

LOG = "/admin/deliveries/delivery/"


@pytest.fixture
def log(school, school_admin, client):
    """Ada's client and a few deliveries of two webhooks."""
    client.force_login(school_admin)
    crm = SubscriptionFactory(school=school, name="CRM")
    erp = SubscriptionFactory(school=school, name="ERP")
    rows = {
        "failed": delivery_create(crm),
        "delivered": delivery_create(crm, status=DeliveryStatus.DELIVERED),
        "retrying": delivery_create(
            erp,
            status=DeliveryStatus.PENDING,
            event=event_create(school, type="student.signed"),
            last_response_status=503,
            last_error_kind=ErrorKind.HTTP_STATUS,
        ),
        "test": delivery_create(erp, status=DeliveryStatus.DELIVERED, is_test=True),
        "old": delivery_create(erp),
    }
    Delivery.objects.filter(pk=rows["old"].pk).update(
        created_at=timezone.now() - dt.timedelta(days=10)
    )
    return client, rows, crm, erp


def _listed(response) -> set:
    return {delivery.pk for delivery in response.context["cl"].result_list}


def test_the_filters_narrow_the_log(log):
    client, rows, crm, _erp = log
    week_ago = (timezone.localtime() - dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")

    failing = client.get(LOG, {"status": "failing"})
    by_webhook = client.get(LOG, {"subscription": crm.pk})
    by_type = client.get(LOG, {"event_type": "student.signed"})
    recent = client.get(LOG, {"created_at_from": week_ago})
    old = client.get(LOG, {"created_at_to": (timezone.localdate() - dt.timedelta(days=9))})
    tests = client.get(LOG, {"test": "yes"})

    assert _listed(failing) == {rows["failed"].pk, rows["retrying"].pk, rows["old"].pk}
    assert _listed(by_webhook) == {rows["failed"].pk, rows["delivered"].pk}
    assert _listed(by_type) == {rows["retrying"].pk}
    assert rows["old"].pk not in _listed(recent)
    assert len(_listed(recent)) == 4
    assert _listed(old) == {rows["old"].pk}
    assert _listed(tests) == {rows["test"].pk}


def test_search_takes_a_delivery_id_a_webhook_id_or_an_event_id(log):
    client, rows, _crm, _erp = log
    delivery = rows["failed"]

    by_id = client.get(LOG, {"q": str(delivery.pk)})
    by_webhook_id = client.get(LOG, {"q": f"msg_{delivery.pk.hex}"})
    by_event = client.get(LOG, {"q": str(delivery.event_id)})
    nonsense = client.get(LOG, {"q": "nothing-like-this"})

    assert _listed(by_id) == _listed(by_webhook_id) == _listed(by_event) == {delivery.pk}
    assert _listed(nonsense) == set()


def test_search_takes_an_id_prefix_an_event_type_a_webhook_name_or_a_status(log):
    client, rows, _crm, _erp = log
    delivery = rows["retrying"]

    prefix = client.get(LOG, {"q": delivery.pk.hex[:8]})
    short_webhook_id = client.get(LOG, {"q": f"msg_{delivery.pk.hex[:10]}"})
    by_type = client.get(LOG, {"q": "student.signed"})
    by_pattern = client.get(LOG, {"q": "student.*"})
    by_name = client.get(LOG, {"q": "erp"})
    by_status = client.get(LOG, {"q": "503"})

    assert delivery.pk in _listed(prefix)
    assert delivery.pk in _listed(short_webhook_id)
    assert _listed(by_type) == _listed(by_pattern) == {delivery.pk}
    assert _listed(by_name) == {rows["retrying"].pk, rows["test"].pk, rows["old"].pk}
    assert _listed(by_status) == {delivery.pk}


def test_a_reversed_date_range_is_read_the_other_way_round_and_says_so(log, school):
    client, rows, _crm, _erp = log
    today = timezone.localdate(timezone=school.tzinfo)  # the admin shows the school's days

    page = client.get(
        LOG, {"created_at_from": str(today), "created_at_to": str(today - dt.timedelta(days=2))}
    )

    assert _listed(page) == {
        rows["failed"].pk,
        rows["delivered"].pk,
        rows["retrying"].pk,
        rows["test"].pk,
    }
    assert [str(m) for m in page.context["messages"]] == [
        f"“From” was after “To”: the dates were swapped to show {today - dt.timedelta(days=2)} "
        f"to {today}."
    ]


def test_the_list_never_counts_or_scans_the_whole_table(log):
    client, *_ = log

    with CaptureQueriesContext(connection) as queries:
        response = client.get(LOG, {"status": "failed"})

    assert response.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries if "deliveries_delivery" in q["sql"]]
    counts = [sql for sql in statements if "COUNT(" in sql]
    assert counts
    assert all("LIMIT 10001" in sql for sql in counts)
    assert not [sql for sql in statements if "DISTINCT" in sql]
    assert not [sql for sql in statements if "UPPER(" in sql or "LIKE" in sql]
    listing = next(sql for sql in statements if "ORDER BY" in sql and "COUNT(" not in sql)
    assert '"deliveries_delivery"."body"' not in listing


def test_past_the_exact_limit_the_count_is_an_estimate(log, monkeypatch, admin_client):
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_LIMIT", 2)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")

    page = admin_client.get(LOG)

    assert page.context["cl"].paginator.count_is_estimate is True
    assert "about " in page.content.decode()


def test_a_delivery_shows_every_attempt_with_an_explanation(log):
    client, rows, _crm, _erp = log

    page = client.get(f"{LOG}{rows['failed'].pk}/change/").content.decode()

    assert "500: the receiver failed while handling the request" in page
    assert "database is down" in page
    assert "Authorization: [redacted]" in page
    assert f"msg_{rows['failed'].pk.hex}" in page
    assert 'id="retrigger"' in page


def test_retrigger_is_a_post(log):
    client, rows, _crm, _erp = log
    url = f"{LOG}{rows['failed'].pk}/retrigger/"

    assert client.get(url).status_code == 405
    response = client.post(url, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Sending it now: the new attempt appears below within moments."
    ]
    assert Delivery.objects.get(pk=rows["failed"].pk).status == DeliveryStatus.PENDING


def test_a_bulk_send_now_asks_first_and_sends_every_kind_of_delivery(log):
    client, rows, _crm, _erp = log
    selected = [str(rows[name].pk) for name in ("failed", "delivered", "retrying", "test")]
    action = {"action": "retrigger_selected", "index": "0", "_selected_action": selected}

    asked = client.post(LOG, action).content.decode()
    done = client.post(LOG, {**action, "confirm": "yes"}, follow=True)

    assert "Yes, send 4 now" in asked
    assert "Retrying: 1" in asked
    assert [str(m) for m in done.context["messages"]] == ["4 deliveries are being sent now."]
    states = {
        name: Delivery.objects.values_list("status", "next_trigger").get(pk=rows[name].pk)
        for name in ("failed", "delivered", "retrying", "test")
    }
    assert states == {
        "failed": ("pending", "manual"),
        "delivered": ("pending", "manual"),
        "retrying": ("pending", "manual"),
        "test": ("pending", "test"),
    }


def test_a_bulk_send_now_skips_a_disabled_webhook_and_says_why(log):
    client, rows, crm, _erp = log
    crm.is_active = False
    crm.save()
    selected = [str(rows[name].pk) for name in ("failed", "retrying")]
    action = {"action": "retrigger_selected", "index": "0", "_selected_action": selected}

    done = client.post(LOG, {**action, "confirm": "yes"}, follow=True)

    assert [str(m) for m in done.context["messages"]] == [
        "1 delivery is being sent now. 1 not sent: its webhook is disabled (re-enable it first)."
    ]
    assert Delivery.objects.get(pk=rows["failed"].pk).status == DeliveryStatus.FAILED


def test_send_now_on_a_disabled_webhook_sends_nothing_and_offers_to_re_enable(log):
    client, rows, crm, _erp = log
    crm.is_active = False
    crm.disabled_reason = "The receiver answered 410 Gone."
    crm.save()
    delivery = rows["failed"]
    attempts = delivery.attempts

    page = client.get(f"{LOG}{delivery.pk}/change/").content.decode()
    refused = client.post(f"{LOG}{delivery.pk}/retrigger/", follow=True)

    assert "Re-enable the webhook and send now" in page
    assert 'id="retrigger"' not in page
    assert [str(m) for m in refused.context["messages"]] == [
        "Nothing was sent: the webhook “CRM” is disabled. Re-enable it, then send this "
        "delivery again."
    ]
    assert Delivery.objects.values_list("status", "attempts").get(pk=delivery.pk) == (
        "failed",
        attempts,
    )

    enabled = client.post(f"{LOG}{delivery.pk}/retrigger/", {"enable": "1"}, follow=True)

    assert [str(m) for m in enabled.context["messages"]] == [
        "The webhook “CRM” is enabled again.",
        "Sending it now: the new attempt appears below within moments.",
    ]
    crm.refresh_from_db()
    assert crm.is_active is True
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING


def test_a_due_delivery_held_back_says_why_on_its_page(log):
    """A delivery due an hour ago that has not gone: its page says what it waits for, not
    "attempt n of N at" a time already past."""
    from deliveries.models import CircuitState, EndpointState

    client, rows, crm, erp = log
    hour_ago = timezone.now() - dt.timedelta(hours=1)
    behind_circuit, paused = rows["retrying"], delivery_create(crm, status=DeliveryStatus.PENDING)
    Delivery.objects.filter(pk__in=[behind_circuit.pk, paused.pk]).update(next_attempt_at=hour_ago)
    EndpointState.objects.create(
        subscription=erp,
        circuit_state=CircuitState.OPEN,
        circuit_changed_at=hour_ago,
        consecutive_failures=7,
        probe_at=timezone.now() + dt.timedelta(minutes=4),
    )
    crm.paused_at = hour_ago
    crm.save()

    circuit_page = client.get(f"{LOG}{behind_circuit.pk}/change/").content.decode()
    paused_page = client.get(f"{LOG}{paused.pk}/change/").content.decode()

    assert "Waiting for the receiver (attempt 2)." in circuit_page
    assert "circuit open since" in circuit_page
    assert "one is sent as a probe at" in circuit_page
    assert "Held while the webhook is paused" in paused_page
    assert " of 17 at " not in circuit_page + paused_page


def test_a_delivery_waiting_in_turn_on_a_paused_webhook_says_it_is_held(log):
    """Sent again in turn (a recovery, the rest of a "send now"), it goes within the limits,
    so a pause holds it too: its page says so, not only that it waits for its turn."""
    client, _rows, crm, _erp = log
    waiting = delivery_create(
        crm,
        status=DeliveryStatus.PENDING,
        next_trigger=AttemptTrigger.RECOVERY,
        next_attempt_at=timezone.now() - dt.timedelta(minutes=5),
    )
    crm.paused_at = timezone.now() - dt.timedelta(hours=1)
    crm.save()

    page = client.get(f"{LOG}{waiting.pk}/change/").content.decode()

    assert "Held while the webhook is paused" in page
