"""Payload search of the delivery log, and its streamed CSV/JSON export (scoped, no secrets)."""

import csv
import io
import json

import pytest
from django.db import connection

from deliveries.export import COLUMNS
from deliveries.models import Delivery, DeliveryStatus
from deliveries.selectors import deliveries_payload_q
from events.models import Event
from events.search import events_payload_matching
from tests.deliveries.factories import delivery_create, event_create
from tests.subscriptions.factories import (
    EVERY_SECRET,
    SubscriptionFactory,
    webhook_with_every_secret,
)

pytestmark = pytest.mark.django_db


def _delivery(subscription, data, **fields):
    event = event_create(subscription.school, data=data)
    return delivery_create(subscription, event=event, **fields)


@pytest.fixture
def logs(school, other_school):
    """Deliveries of two schools whose events mention various things."""
    mine = SubscriptionFactory(school=school, name="Moodle sync")
    theirs = SubscriptionFactory(school=other_school, name="Their sync")
    return {
        "c-42": _delivery(mine, {"course": {"id": "c-42", "name": "Maths 101"}}),
        "c-420": _delivery(mine, {"course": {"id": "c-420", "name": "Physics"}}),
        "grade": _delivery(
            mine, {"student": {"id": "s-7"}, "grade": 4711}, status=DeliveryStatus.DELIVERED
        ),
        "theirs c-42": _delivery(theirs, {"course": {"id": "c-42", "name": "Maths 101"}}),
    }


def _found(term, school_ids):
    return set(Delivery.objects.filter(deliveries_payload_q(term=term, school_ids=school_ids)))


# --- Search ------------------------------------------------------------------------------------


def test_a_payload_search_finds_whole_values_phrases_and_numbers_in_the_users_schools(logs, school):
    mine = [school.pk]

    assert _found("c-42", mine) == {logs["c-42"]}
    assert _found("C-42", mine) == {logs["c-42"]}  # case is ignored
    assert _found("4711", mine) == {logs["grade"]}
    assert _found('"maths 101"', mine) == {logs["c-42"]}
    assert _found("c-4", mine) == set()  # whole values, not prefixes
    assert _found("course", mine) == set()  # keys are not searched, only values
    assert _found("-- ::", mine) == set()
    assert _found("c-42", None) == {logs["c-42"], logs["theirs c-42"]}


def test_the_payload_search_runs_on_the_events_index():
    matching = events_payload_matching(Event.objects.all(), term="c-42", vendor="postgresql")
    sql, params = matching.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "event_data_search_idx" in plan


def test_the_api_filters_the_list_by_payload_within_the_school(api, logs):
    found = api.get("/api/v1/deliveries/?payload=c-42")
    phrase = api.get('/api/v1/deliveries/?payload="maths 101"&status=failed')
    empty = api.get("/api/v1/deliveries/?payload=")
    too_long = api.get("/api/v1/deliveries/?payload=" + "x" * 201)

    assert [d["id"] for d in found.json()["results"]] == [str(logs["c-42"].pk)]
    assert [d["id"] for d in phrase.json()["results"]] == [str(logs["c-42"].pk)]
    assert empty.status_code == 400
    assert set(empty.json()["errors"]) == {"payload"}
    assert too_long.status_code == 400
    assert set(too_long.json()["errors"]) == {"payload"}


def test_the_admin_filters_the_log_by_payload_within_the_users_schools(
    client, school_admin, support_user, logs
):
    url = "/admin/deliveries/delivery/?payload=c-42"

    client.force_login(school_admin)
    admins = client.get(url)
    client.force_login(support_user)
    supports = client.get(url)

    assert list(admins.context["cl"].result_list) == [logs["c-42"]]
    assert "payload contains" in admins.content.decode()
    assert set(supports.context["cl"].result_list) == {logs["c-42"], logs["theirs c-42"]}


# --- Export ------------------------------------------------------------------------------------


def _csv(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_api_export_is_the_filtered_list_of_the_school_as_csv_or_json(api, logs):
    as_csv = api.get("/api/v1/deliveries/export/?format=csv&status=failed")
    as_json = api.get("/api/v1/deliveries/export/?format=json&payload=4711")

    assert as_csv.status_code == 200
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"].startswith('attachment; filename="deliveries-')
    rows = _csv(as_csv)
    assert list(rows[0]) == COLUMNS
    assert {row["id"] for row in rows} == {str(logs["c-42"].pk), str(logs["c-420"].pk)}
    row = next(row for row in rows if row["id"] == str(logs["c-42"].pk))
    assert row["webhook_name"] == "Moodle sync"
    assert row["event_id"] == str(logs["c-42"].event_id)
    assert row["state"] == "failed"
    assert row["is_test"] == "false"
    assert row["replay_number"] == "0"
    assert row["last_response_status"] == "500"
    assert row["last_error_kind"] == "http_status"
    assert row["created_at"].endswith("+01:00") or row["created_at"].endswith("+02:00")
    assert as_json["Content-Type"] == "application/json; charset=utf-8"
    [item] = json.loads(b"".join(as_json.streaming_content))
    assert list(item) == COLUMNS
    assert item["id"] == str(logs["grade"].pk)
    assert item["state"] == "delivered"


def test_the_api_export_refuses_a_bad_format_or_filter_as_json(api, logs):
    no_format = api.get("/api/v1/deliveries/export/")
    xml = api.get("/api/v1/deliveries/export/?format=xml")
    bad_filter = api.get("/api/v1/deliveries/export/?format=csv&status=lost")

    for response in (no_format, xml, bad_filter):
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
    assert set(no_format.json()["errors"]) == {"format"}
    assert set(bad_filter.json()["errors"]) == {"status"}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_method_the_api_export_does_not_take_is_a_405_in_json(api, method):
    # Given the export, which only reads
    # When it is asked to write
    response = getattr(api, method)("/api/v1/deliveries/export/?format=csv")

    # Then the refusal says so in JSON, like every other error, not as an empty CSV
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}


def test_an_export_never_holds_a_secret_and_neutralises_formula_cells(api, school, receiver):
    webhook = webhook_with_every_secret(school=school, receiver=receiver)
    webhook.name = '=HYPERLINK("http://evil.example")'
    webhook.save()
    leaked = " ".join(EVERY_SECRET.values())
    delivery_create(webhook, last_error=f"The receiver said: {leaked}")

    body = b"".join(api.get("/api/v1/deliveries/export/?format=csv").streaming_content).decode()

    for name, value in EVERY_SECRET.items():
        assert value not in body, name
    [row] = list(csv.DictReader(io.StringIO(body)))
    assert row["webhook_name"] == '\'=HYPERLINK("http://evil.example")'
    assert row["webhook_url"].endswith("?token=…")
    assert row["last_error"].startswith("The receiver said: [hidden]")
    assert "X-Api-Token" not in body  # no request headers
    assert "receiver-token-123" not in body


def test_a_school_admins_admin_export_holds_only_that_schools_filtered_rows(
    client, school_admin, support_user, logs
):
    client.force_login(school_admin)
    filtered = client.get("/admin/deliveries/delivery/export/csv/?payload=c-42")
    everything = client.get("/admin/deliveries/delivery/export/json/")
    page = client.get("/admin/deliveries/delivery/?payload=c-42")
    client.force_login(support_user)
    supports = client.get("/admin/deliveries/delivery/export/csv/?payload=c-42")
    unknown = client.get("/admin/deliveries/delivery/export/xlsx/")

    assert [row["id"] for row in _csv(filtered)] == [str(logs["c-42"].pk)]
    assert {row["school"] for row in json.loads(b"".join(everything.streaming_content))} == {
        logs["c-42"].school.slug
    }
    assert "/admin/deliveries/delivery/export/csv/?payload=c-42" in page.content.decode()
    assert {row["id"] for row in _csv(supports)} == {
        str(logs["c-42"].pk),
        str(logs["theirs c-42"].pk),
    }
    assert unknown.status_code == 404
