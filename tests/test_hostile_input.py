"""Hostile input to every API operation and every admin list filter: never a 5xx, and a refused
request writes nothing.

Property-based (Hypothesis): each API operation of the published schema gets bodies with one
field replaced by a hostile JSON fragment (NUL, lone surrogates, nesting past the limit,
numbers JSON cannot write, dates at the edges of the calendar, header values HTTP cannot carry,
huge strings), query strings with hostile values for each of its parameters, and hostile
headers; each admin list gets hostile values for each of its filters. Fragments that no field
may ever hold must be refused with a 400 naming the field; every refusal must leave every table
as it was. A few fixed cases (a 10 MB body, a POST to an unknown path) complete the table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.sites import site
from django.test import Client, RequestFactory
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deliveries.models import Delivery
from deliveries.services import delivery_attempt, event_fan_out
from events.models import EventType
from events.services import event_publish, scheduled_event_create
from subscriptions.services import subscription_create

pytestmark = pytest.mark.django_db

EXAMPLES = 120
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


# Raw JSON text no field may hold: always a 400 naming the field.
ALWAYS_INVALID = [
    '"\\u0000"',
    '"name\\u0000"',
    '"\\ud800"',
    '"x\\udfff"',
    '{"\\u0000": 1}',
    '{"key\\ud800": "v"}',
    '["ok", "\\u0000"]',
    _nested(33),
    _nested(900),
    _nested(10_000),
    '{"a": ' * 40 + "1" + "}" * 40,
    "1e400",
    "-1e999",
    '{"n": 1e400}',
]
# Raw JSON text that is wrong for most fields, and must never be a 5xx.
SUSPICIOUS = [
    '"9999-12-31T23:00:00Z"',
    '"0001-01-01T00:00:00-12:00"',
    '"2020-01-01T00:00:00+16:00"',
    '"9999-12-31"',
    '{"X-Token": "日本語"}',
    '{"X-Token": "a\\u2028b"}',
    '{"' + "X" * 10_000 + '": "v"}',
    '{"course": {"id": "c1", "starts_at": "9999-12-31T23:00:00Z"}}',
    '{"course": {"id": "c1"}, "at": "0001-01-01T00:00:00+14:00"}',
    '"' + "x" * 100_000 + '"',
    "9" * 5000,
    "12345678901234567890",
    "-1",
    "null",
    "true",
    "[]",
    "{}",
    '"{{ data|json|json|json|json|json|json|json|json|json|json|json|json|json|json }}"',
    '"{% for a in data %}{% for b in data %}{{ a }}{% endfor %}{% endfor %}"',
    '"http://127.0.0.1:9/?token=\\u0000"',
    '"\\u2028\\u2029\\ufeff"',
]
QUERY_VALUES = [
    "\x00",
    "a\x00b",
    "9999-12-31",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "2020-01-01T00:00:00+16:00",
    "2020-01-01T00:00:00-23:59",
    "-1",
    "0",
    "99999999999999999999",
    "null",
    "日本語",
    "\u2028",
    "x" * 5000,
    "' OR 1=1 --",
    "%00",
    "../../etc/passwd",
    "00000000-0000-0000-0000-000000000000",
    "²",
]


def _counts() -> dict[str, int]:
    """Rows in every table of the product's apps (and users)."""
    models = [
        model
        for label in ("schools", "events", "subscriptions", "deliveries", "auth")
        for model in apps.get_app_config(label).get_models()
    ]
    return {model._meta.label: model.objects.count() for model in models}


@pytest.fixture
def world(school, school_key, platform_key, resolver):
    subscription = subscription_create(
        school=school,
        name="CRM",
        url="http://127.0.0.1:9/hook?token=t0k3n-value",
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="lms",
        basic_auth_password="pw-secret-1",
        custom_headers={"X-Api-Key": "k-secret-2", "X-Tenant": "lycee"},
    )
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    delivery_attempt(delivery_id=delivery_id)
    scheduled = scheduled_event_create(
        school=school,
        type="course.started",
        data=EventType.objects.get(key="course.started").sample_payload,
        due_at=timezone.now() + dt.timedelta(days=30),
        key="course-start",
    )
    return {
        "school": school,
        "subscription": subscription,
        "event": event,
        "delivery": Delivery.objects.get(pk=delivery_id),
        "scheduled": scheduled,
        "school_key": school_key,
        "platform_key": platform_key,
    }


_READ_ONCE: dict[str, Any] = {}


def _operations(client: Client) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the published schema (read once)."""
    if "operations" not in _READ_ONCE:
        schema = client.get("/api/schema/", {"format": "json"}).json()
        _READ_ONCE["operations"] = [
            (method.upper(), path, operation)
            for path, methods in schema["paths"].items()
            for method, operation in methods.items()
        ]
    return _READ_ONCE["operations"]


def _base_body(method: str, path: str, world: dict[str, Any]) -> dict[str, Any] | None:
    future = (timezone.now() + dt.timedelta(days=40)).isoformat()
    if path == "/api/v1/subscriptions/" or path == "/api/v1/subscriptions/{id}/":
        return {"name": "Hostile", "url": "http://127.0.0.1:9/in", "topics": ["course.created"]}
    if path.endswith("/test/") or path.endswith("/preview/"):
        return {"event_type": "course.created"}
    if path.endswith("/recover/"):
        return {"since": "2020-01-01T00:00:00Z"}
    if path.endswith("/replay/"):
        return {"since": "2020-01-01T00:00:00Z", "dry_run": True}
    if path.endswith("/pause/"):
        return {"resume_at": future}
    if path == "/api/v1/events/":
        return {
            "school": world["school"].slug,
            "type": "course.created",
            "data": {"course": {"id": "c2"}},
        }
    if path == "/api/v1/scheduled-events/":
        return {
            "school": world["school"].slug,
            "type": "course.started",
            "data": EventType.objects.get(key="course.started").sample_payload,
            "due_at": future,
        }
    if path == "/api/v1/scheduled-events/{id}/" and method == "PATCH":
        return {"due_at": future}
    return None


def _concrete(method: str, path: str, world: dict[str, Any]) -> str:
    if method == "DELETE" and path.startswith("/api/v1/subscriptions/"):
        doomed = subscription_create(
            school=world["school"],
            name=f"Doomed {Delivery.objects.count()}-{timezone.now().timestamp()}",
            url="http://127.0.0.1:9/d",
            topics=["*"],
        )
        return path.format(id=doomed.pk)
    ids = {
        "/api/v1/subscriptions/": world["subscription"].pk,
        "/api/v1/deliveries/": world["delivery"].pk,
        "/api/v1/events/": world["event"].pk,
        "/api/v1/scheduled-events/": world["scheduled"].pk,
    }
    identifier = next((value for prefix, value in ids.items() if path.startswith(prefix)), None)
    return path.format(id=identifier, key="course.created")


def _key(path: str, world: dict[str, Any]) -> str:
    platform = path.startswith(("/api/v1/events/", "/api/v1/scheduled-events/"))
    return world["platform_key" if platform else "school_key"]


def _send(client, method, url, key, *, body=None, query=None, headers=None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}", **(headers or {})}
    if method == "GET":
        return client.get(url, query or {}, **extra)
    return client.generic(method, url, body or "", content_type="application/json", **extra)


def _assert_refusal_writes_nothing(response, before, context):
    assert response.status_code < 500, (context, response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert _counts() == before, (context, response.status_code)


@given(data=st.data())
@HYPOTHESIS
def test_hostile_json_bodies_never_fail_the_api_and_refusals_write_nothing(world, data):
    client = Client()
    operations = [op for op in _operations(client) if "requestBody" in op[2]]
    method, path, _ = data.draw(st.sampled_from(operations), label="operation")
    base = _base_body(method, path, world)
    assert base is not None, (method, path)
    fragment = data.draw(st.sampled_from(ALWAYS_INVALID + SUSPICIOUS), label="fragment")
    field = data.draw(st.sampled_from([*base, "extra", "custom_headers", "data"]), label="field")
    body = json.dumps({**base, field: "__HOSTILE__"}).replace('"__HOSTILE__"', fragment)
    url = _concrete(method, path, world)
    before = _counts()

    response = _send(client, method, url, _key(path, world), body=body)

    context = (method, url, field, fragment[:80])
    _assert_refusal_writes_nothing(response, before, context)
    if fragment in ALWAYS_INVALID:
        assert response.status_code == 400, context
        assert field in response.json()["errors"] or "__all__" in response.json()["errors"], context


@given(data=st.data())
@HYPOTHESIS
def test_hostile_query_strings_never_fail_the_api(world, data):
    client = Client()
    operations = [op for op in _operations(client) if op[0] == "GET"]
    method, path, operation = data.draw(st.sampled_from(operations), label="operation")
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    names += ["page", "page_size", "cursor", "ordering", "format", "\x00"]
    query = {
        data.draw(st.sampled_from(names), label="name"): data.draw(
            st.sampled_from(QUERY_VALUES), label="value"
        )
        for _ in range(data.draw(st.integers(1, 3), label="parameters"))
    }
    url = _concrete(method, path, world)
    before = _counts()

    response = _send(client, method, url, _key(path, world), query=query)

    context = (url, query)
    _assert_refusal_writes_nothing(response, before, context)
    if any("\x00" in name + value for name, value in query.items()):
        assert response.status_code == 400, context
        assert response.json()["errors"], context


@given(data=st.data())
@settings(parent=HYPOTHESIS, max_examples=60)
def test_hostile_headers_never_fail_the_api(world, data):
    client = Client()
    method, path, _ = data.draw(st.sampled_from(_operations(client)), label="operation")
    authorization = data.draw(
        st.sampled_from(
            [
                f"Bearer {_key(path, world)}",
                "Bearer \x00",
                "Bearer whk_\x00\x00\x00\x00\x00\x00\x00\x00",
                "Bearer " + "a" * 10_000,
                "Bearer whk_" + "é" * 40,
                "Basic bG1zOnB3",
                "Bearer",
                "",
            ]
        ),
        label="authorization",
    )
    headers = {
        "HTTP_AUTHORIZATION": authorization,
        "HTTP_IDEMPOTENCY_KEY": data.draw(
            st.sampled_from(["ok-1", "\x00", "x" * 300, "é\x00", " "]), label="idempotency"
        ),
        "HTTP_X_FORWARDED_FOR": data.draw(
            st.sampled_from(["203.0.113.9", "\x00", "a, b, c", "x" * 5000]), label="xff"
        ),
    }
    base = _base_body(method, path, world)
    url = _concrete(method, path, world)
    before = _counts()

    if method == "GET":
        response = client.get(url, **headers)
    else:
        content_type = data.draw(
            st.sampled_from(
                ["application/json", "text/plain", "application/x-www-form-urlencoded"]
            ),
            label="content type",
        )
        response = client.generic(
            method, url, json.dumps(base) if base else "", content_type=content_type, **headers
        )

    _assert_refusal_writes_nothing(response, before, (method, url, headers))


def _admin_filters() -> list[tuple[str, list[str]]]:
    """Each admin list and the query parameters its filters (and search, ordering, paging,
    date hierarchy) read (found once)."""
    if "admin" not in _READ_ONCE:
        _READ_ONCE["admin"] = _admin_filters_find()
    return _READ_ONCE["admin"]


def _admin_filters_find() -> list[tuple[str, list[str]]]:
    from django.contrib.auth import get_user_model

    superuser = get_user_model().objects.filter(is_superuser=True).first()
    lists = []
    for model, model_admin in site._registry.items():
        request = RequestFactory().get("/")
        request.user = superuser
        if not model_admin.has_view_permission(request):
            continue
        changelist = model_admin.get_changelist_instance(request)
        names = [
            name for spec in changelist.filter_specs for name in spec.expected_parameters() if name
        ]
        if model_admin.date_hierarchy:
            field = model_admin.date_hierarchy
            names += [f"{field}__year", f"{field}__month", f"{field}__day"]
        names += ["q", "o", "p", "all", "e", "_to_field"]
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        lists.append((url, names))
    return lists


@given(data=st.data())
@settings(parent=HYPOTHESIS, max_examples=100)
def test_hostile_admin_list_filters_never_fail(world, admin_user, support_user, data):
    lists = _admin_filters()
    url, names = data.draw(st.sampled_from(lists), label="list")
    user = data.draw(st.sampled_from([admin_user, support_user]), label="user")
    query = {
        data.draw(st.sampled_from(names), label="name"): data.draw(
            st.sampled_from(QUERY_VALUES), label="value"
        )
        for _ in range(data.draw(st.integers(1, 3), label="filters"))
    }
    client = Client()
    client.force_login(user)
    before = _counts()

    response = client.get(url, query)

    assert response.status_code < 500, (url, query, response.status_code)
    assert _counts() == before
    if any("\x00" in value for value in query.values()):
        assert response.status_code == 400, (url, query)


# The lists with a school filter (shown to those who see several schools).
SCHOOL_FILTERED_LISTS = [
    "/admin/subscriptions/subscription/",
    "/admin/deliveries/delivery/",
    "/admin/events/event/",
    "/admin/events/scheduledevent/",
    "/admin/schools/apikey/",
    "/admin/audit/auditentry/",
]


@pytest.mark.parametrize("digits", ["²", "٣", "１"])
def test_a_school_filter_of_digits_other_than_0_to_9_shows_an_empty_list(
    client, world, other_school, admin_user, digits
):
    # Python calls these digits (str.isdigit), and int() refuses "²".
    client.force_login(admin_user)

    responses = {url: client.get(url, {"school": digits}) for url in SCHOOL_FILTERED_LISTS}

    assert {url: r.status_code for url, r in responses.items()} == dict.fromkeys(
        SCHOOL_FILTERED_LISTS, 200
    )
    assert {url: r.context["cl"].result_count for url, r in responses.items()} == dict.fromkeys(
        SCHOOL_FILTERED_LISTS, 0
    )


def test_the_body_preview_given_a_school_that_is_not_a_number_asks_for_the_school(
    client, world, admin_user
):
    client.force_login(admin_user)

    response = client.post(
        "/admin/subscriptions/subscription/preview/",
        {"school": "²", "body_template": "", "event_type": "course.created"},
    )

    assert response.status_code == 400
    assert response.json() == {"error": "Choose the school first."}


def test_admin_lists_cover_every_registered_model(admin_user, world):
    assert {url for url, _ in _admin_filters()} >= {
        "/admin/subscriptions/subscription/",
        "/admin/deliveries/delivery/",
        "/admin/deliveries/deliveryattempt/",
        "/admin/events/event/",
        "/admin/events/scheduledevent/",
        "/admin/schools/school/",
        "/admin/schools/apikey/",
    }


@pytest.mark.parametrize(
    ("url", "body", "status"),
    [
        ("/api/v1/subscriptions/", b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}', 413),
        ("/api/v1/events/", b'{"data": "' + b"x" * (600 * 1024) + b'"}', 413),
        ("/api/v1/nothing-here/", b"{}", 404),
        ("/api/v1/subscriptions/%00/", b"{}", 404),
        ("/api/v1/subscriptions/" + "0" * 5000 + "/test/", b"{}", 404),
    ],
)
def test_oversized_bodies_and_unknown_paths_answer_json(world, url, body, status):
    client = Client(enforce_csrf_checks=True)  # as a real deployment: CSRF is on for sessions
    before = _counts()

    response = client.post(
        url,
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {_key(url, world)}",
    )

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    assert _counts() == before


def test_more_query_parameters_than_django_reads_is_a_json_400(world):
    # Given a query string with one parameter more than Django reads
    query = "&".join(f"p{number}=1" for number in range(1001))

    # When the API is asked with it
    response = Client().get(
        f"/api/v1/deliveries/?{query}", HTTP_AUTHORIZATION=f"Bearer {world['school_key']}"
    )

    # Then it is a 400 in the API's shape, not Django's HTML page
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "errors": {"__all__": ["The request has more than 1000 parameters."]}
    }


def test_an_admin_form_with_text_that_cannot_be_stored_is_refused_naming_the_field(
    client, world, admin_user
):
    client.force_login(admin_user)
    before = _counts()

    response = client.post(
        f"/admin/subscriptions/subscription/{world['subscription'].pk}/change/",
        {"name": "Renamed\x00", "url": "http://127.0.0.1:9/", "topics": "course.created"},
    )

    assert response.status_code == 400
    assert "<code>name</code>: The value contains a NUL character" in response.content.decode()
    assert _counts() == before
    world["subscription"].refresh_from_db()
    assert world["subscription"].name == "CRM"


def test_an_admin_date_filter_past_the_calendar_is_refused_with_the_reason(
    client, world, admin_user
):
    client.force_login(admin_user)

    response = client.get(
        "/admin/deliveries/delivery/", {"created_at_to": "9999-12-31"}, follow=True
    )

    assert response.status_code == 200
    assert response.redirect_chain == [("/admin/deliveries/delivery/?e=1", 302)]
    assert (
        "The filter created_at_to=&#x27;9999-12-31&#x27; is outside the dates every time zone "
        "can show (0001-01-02 to 9999-12-30 UTC). The filter was not applied."
    ) in response.content.decode()


@pytest.mark.parametrize(
    "url", ["/admin/subscriptions/subscription/add/", "/admin/schools/apikey/add/"]
)
@pytest.mark.parametrize("value", ["abc", "²", '{"a": 1}'])
def test_a_form_posted_with_a_school_that_is_not_an_id_shows_the_error(
    client, world, other_school, admin_user, url, value
):
    # Seeing several schools, the school is searched as you type (an autocomplete select).
    client.force_login(admin_user)
    before = _counts()

    response = client.post(url, {"school": value, "name": "CRM"})

    assert response.status_code == 200
    assert "school" in response.context["adminform"].form.errors
    assert _counts() == before
