"""The OpenAPI description: generated without warnings, complete, served with its docs page."""

import datetime as dt
import io

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from events.models import EventType
from events.services import scheduled_event_create

pytestmark = pytest.mark.django_db


def test_the_schema_generates_without_a_single_warning():
    out = io.StringIO()

    call_command("spectacular", "--fail-on-warn", "--validate", stdout=out)

    schema = yaml.safe_load(out.getvalue())
    assert schema["openapi"].startswith("3.")


def test_every_operation_is_described_with_its_errors_and_the_bearer_scheme(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)

    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) == 27
    for path, method, operation in operations:
        assert operation.get("summary"), (path, method)
        assert {"bearerAuth": []} in operation["security"], (path, method)
        assert "401" in operation["responses"], (path, method)
        takes_input = method in {"post", "put", "patch"}
        if takes_input and not path.endswith(("/retrigger/", "/rotate-secret/")):
            assert "400" in operation["responses"], (path, method)
    events_post = schema["paths"]["/api/v1/events/"]["post"]
    assert {p["name"] for p in events_post["parameters"]} == {"Idempotency-Key"}
    assert {"202", "409", "413"} <= set(events_post["responses"])


def test_the_docs_page_is_served_with_local_assets(client):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    assert b"cdn.jsdelivr.net" not in page.content


def test_an_options_request_to_the_docs_page_lists_its_methods(client):
    # Given the docs page, whose only renderer is its HTML template
    # When a client asks which methods it takes
    response = client.options("/api/docs/")

    # Then it says so, with no body, instead of failing to render DRF's metadata as the page
    assert response.status_code == 200
    assert response.content == b""
    assert set(response["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_every_error_is_described_as_the_json_the_api_answers(client):
    # Given the published description
    schema = yaml.safe_load(client.get("/api/schema/").content)

    # When its error answers are listed with the media types it gives them
    media_types = {
        (path, method, status): sorted(response.get("content", {}))
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }

    # Then every one is JSON, as every error is (the export's too: never a CSV file)
    assert {key: types for key, types in media_types.items() if types != ["application/json"]} == {}


def test_moving_a_scheduled_event_is_described_with_the_time_it_requires(
    client, platform_api, school, catalog
):
    # Given a scheduled event
    scheduled = scheduled_event_create(
        school=school,
        type="course.started",
        data=EventType.objects.get(key="course.started").sample_payload,
        due_at=timezone.now() + dt.timedelta(days=1),
        key="schema-move",
    )
    schema = yaml.safe_load(client.get("/api/schema/").content)
    move = schema["paths"]["/api/v1/scheduled-events/{id}/"]["patch"]["requestBody"]

    # When it is moved without a time
    response = platform_api.patch(f"/api/v1/scheduled-events/{scheduled.pk}/", {}, format="json")

    # Then the API refuses it, as the published description says it will
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["due_at"]
    body = schema["components"]["schemas"][
        move["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert move["required"] is True
    assert body["required"] == ["due_at"]


def test_a_body_the_api_cannot_read_or_an_answer_it_cannot_give_is_documented(client, api, school):
    # Given the published description
    schema = yaml.safe_load(client.get("/api/schema/").content)
    create = schema["paths"]["/api/v1/subscriptions/"]["post"]["responses"]
    listing = schema["paths"]["/api/v1/subscriptions/"]["get"]["responses"]

    # When a client sends a body that is not JSON, or accepts nothing but HTML
    not_json = api.post("/api/v1/subscriptions/", "name=x", content_type="text/plain")
    html_only = api.get("/api/v1/subscriptions/", HTTP_ACCEPT="text/html")

    # Then the answers are JSON errors of statuses the description lists for those operations
    assert (not_json.status_code, set(not_json.json())) == (415, {"detail"})
    assert (html_only.status_code, set(html_only.json())) == (406, {"detail"})
    assert create["415"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Detail"
    }
    assert listing["406"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Detail"
    }
    assert "415" not in listing


def test_every_filter_is_described_as_refusing_an_empty_value(client, api, platform_api):
    # Given the published description's text filters (pagination apart)
    schema = yaml.safe_load(client.get("/api/schema/").content)
    filters = {
        (path, parameter["name"]): parameter["schema"]
        for path, methods in schema["paths"].items()
        for parameter in methods.get("get", {}).get("parameters", [])
        if parameter["in"] == "query"
        and parameter["schema"]["type"] == "string"
        and parameter["name"] not in {"cursor", "page", "page_size"}
    }

    # When one is given empty
    empty_payload = api.get("/api/v1/deliveries/?payload=")
    empty_key = platform_api.get("/api/v1/scheduled-events/?key=")
    empty_school = [api.get(f"/api/v1/{path}/?school=") for path in ("events", "scheduled-events")]

    # Then the API refuses it naming it, and the description says it must not be empty
    assert empty_payload.json() == {
        "errors": {"payload": ["Give a value, or leave the parameter out."]}
    }
    assert list(empty_key.json()["errors"]) == ["key"]
    assert [(r.status_code, list(r.json()["errors"])) for r in empty_school] == [
        (400, ["school"]),
        (400, ["school"]),
    ]
    assert ("/api/v1/deliveries/export/", "event_type") in filters
    assert {key: s for key, s in filters.items() if s.get("minLength") != 1} == {}


def test_a_list_by_cursor_is_described_as_refusing_a_bad_cursor_with_a_400(client):
    # Given the published description of the lists paginated by cursor
    schema = yaml.safe_load(client.get("/api/schema/").content)
    lists = {
        path: schema["paths"][path]["get"] for path in ("/api/v1/deliveries/", "/api/v1/events/")
    }

    # Then each says a bad cursor is a 400 by field, and none promises a 404 it cannot give
    for path, operation in lists.items():
        cursor = next(p for p in operation["parameters"] if p["name"] == "cursor")
        assert "400" in cursor["description"], path
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Errors"
        }, path
        assert "404" not in operation["responses"], path
