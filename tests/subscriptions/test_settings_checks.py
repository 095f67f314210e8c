"""A webhook's settings are refused on save when they would make every delivery fail, and the
admin and the API refuse the same values."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from deliveries.services import delivery_attempt, event_fan_out
from events.services import event_publish
from subscriptions.models import Subscription
from subscriptions.services import subscription_create
from tests.subscriptions.test_admin_settings_page import ADD, _form
from webhook_engine.bodies import body_compile
from webhook_engine.envelope import envelope_build
from webhook_engine.render import body_check_samples, render

pytestmark = pytest.mark.django_db

NEW = {"name": "CRM", "url": "http://127.0.0.1:9/hooks", "topics": ["*"]}


def _first_delivery(school):
    """Publish one event, fan it out and make the first attempt of its one delivery."""
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    return delivery_attempt(delivery_id=delivery_id)


# --- A header name the transport refuses ------------------------------------------------------


def test_a_header_name_ending_with_a_line_feed_is_refused_on_save(api, school, receiver):
    response = api.post(
        "/api/v1/subscriptions/",
        {**NEW, "url": receiver.url("/hook"), "custom_headers": {"X-Tenant\n": "lycee"}},
        format="json",
    )

    if response.status_code == 201:  # accepted: what every delivery then does
        attempt = _first_delivery(school)
        assert not attempt.error_kind, (attempt.error_kind, attempt.error_message)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["custom_headers"]
    assert Subscription.objects.count() == 0


# --- A URL whose port cannot be connected to ----------------------------------------------------


def test_a_url_with_port_0_is_refused_on_save(school):
    refused = None
    try:
        subscription_create(school=school, name="CRM", url="http://127.0.0.1:0/hook", topics=["*"])
    except ValidationError as exc:
        refused = exc.message_dict

    if refused is None:  # accepted: what every delivery then does
        attempt = _first_delivery(school)
        assert not attempt.error_kind, (attempt.error_kind, attempt.error_message)
    assert list(refused) == ["url"]


# --- Bodies that pass the check on save but are not what the content type says ---------------


def _envelope(data):
    return envelope_build(
        event_id="0f8b1c2e-1111-4a4a-9c9c-123456789abc",
        event_type="course.created",
        school_id=3,
        school_slug="lycee",
        occurred_at=dt.datetime(2024, 2, 14, 10, 30, tzinfo=dt.UTC),
        data=data,
        tz=ZoneInfo("UTC"),
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_json_body_with_a_number_json_cannot_write_is_refused(literal):
    source = '{"id": {{ id|json }}, "score": ' + literal + "}"

    errors = body_check_samples(source, "json", [("course.created", _envelope({}))])

    assert errors, "accepted a body that JSON.parse, json_decode and RFC 8259 refuse"


def test_a_json_body_with_nan_is_refused_on_save_with_a_400(api, school):
    response = api.post(
        "/api/v1/subscriptions/",
        {**NEW, "body_template": '{"id": {{ id|json }}, "score": NaN}'},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body_template"]


def test_the_xml_filter_writes_only_text_xml_can_carry():
    # The check on save passes with the sample (a plain course name) ...
    source = "<webhook><name>{{ data.course.name|xml }}</name></webhook>"
    sample = _envelope({"course": {"name": "Maths"}})
    assert body_check_samples(source, "xml", [("course.created", sample)]) == []

    # ... and an event whose text holds a character XML 1.0 forbids (a form feed pasted from a
    # word processor) must still render, as the standard XML envelope does (with U+FFFD).
    envelope = _envelope({"course": {"name": "Maths\x0cAlgebra"}})
    standard, _ = render(envelope, content_type="xml")
    assert "<name>Maths\ufffdAlgebra</name>" in standard.decode()
    body, _ = render(envelope, content_type="xml", body=body_compile(source))
    assert "<name>Maths\ufffdAlgebra</name>" in body.decode()


@pytest.mark.parametrize("encoding", ["iso-8859-1", "us-ascii"])
def test_an_xml_body_declaring_an_encoding_other_than_utf_8_is_refused(encoding):
    # Every body is sent as UTF-8 bytes: a declaration saying Latin-1 makes receivers read
    # "Mathématiques" as "MathÃ©matiques"; one saying us-ascii passes the ASCII sample and
    # fails on the first accented name.
    source = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        "<webhook><name>{{ data.course.name|xml }}</name></webhook>"
    )

    errors = body_check_samples(source, "xml", [("course.created", _envelope({"course": {}}))])

    assert errors, f"accepted an XML body declared {encoding} and sent as UTF-8"


# --- The admin form accepts what the API refuses ----------------------------------------------


def test_the_admin_refuses_a_password_the_api_refuses(api, client, school, school_admin):
    password = "p" * 501
    from_api = api.post(
        "/api/v1/subscriptions/",
        {
            **NEW,
            "basic_auth_enabled": True,
            "basic_auth_username": "crm",
            "basic_auth_password": password,
        },
        format="json",
    )
    client.force_login(school_admin)

    page = client.post(ADD, _form(school, basic_auth_password=password))

    assert from_api.status_code == 400
    assert page.status_code == 200, "the admin saved it"
    assert "basic_auth_password" in page.context["adminform"].form.errors
    assert Subscription.objects.count() == 0


def test_the_admin_refuses_a_topic_the_api_refuses(api, client, school, school_admin):
    topic = "course.created" + "*" * 100  # matches course.created, 114 characters
    from_api = api.post("/api/v1/subscriptions/", {**NEW, "topics": [topic]}, format="json")
    client.force_login(school_admin)

    page = client.post(ADD, _form(school, topics=[], topics_patterns=topic))

    assert from_api.status_code == 400
    assert page.status_code == 200, "the admin saved it"
    assert "topics" in page.context["adminform"].form.errors
    assert Subscription.objects.count() == 0
