"""The API against its own OpenAPI schema: generated requests to every endpoint, over HTTP, to a
live server. No answer may be a 5xx, and every documented answer must match its schema.

schemathesis's pytest plugin does not run on pytest 9, so its Python API is driven directly:
each operation of the live schema gets a bounded number of generated cases, requests that fit
the schema and requests that do not, and every answer goes through every check schemathesis
has (status codes, content types, headers and bodies as documented, data outside the schema
refused, missing headers, unsupported methods, auth not ignored, ...) but one:
``positive_data_acceptance``, which expects every request the schema allows to succeed, while
the API checks what no schema says (a URL resolving to a public address, topics in the event
catalog, event data against its type's JSON Schema).
"""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from deliveries.services import event_fan_out
from events.models import EventType
from events.services import event_publish, event_types_sync, scheduled_event_create
from schools.services import api_key_create, platform_key_create
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

EXAMPLES_PER_OPERATION = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 20}


def _not_a_server_error(ctx, response, case):
    status = response.status_code
    assert status < 500, f"{case.method} {case.formatted_path} answered {status}: {response.text}"


@pytest.mark.integration
def test_every_endpoint_honours_the_schema_and_never_fails_with_a_5xx(
    live_server, transactional_db, resolver, settings
):
    # ignored_auth sends thousands of invalid keys from this one address; the limit on failed
    # authentications (429, tested in tests/integration/test_web_processes.py) would answer
    # them before the 401 this check looks for.
    settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE = 1_000_000
    event_types_sync()
    school = SchoolFactory(slug="contract-school")
    subscription = SubscriptionFactory(school=school, url="http://127.0.0.1:9/hook")
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    event_fan_out(event_id=event.id)
    scheduled = scheduled_event_create(
        school=school,
        type="course.started",
        data=EventType.objects.get(key="course.started").sample_payload,
        due_at=timezone.now() + dt.timedelta(days=30),
        key="contract-course-start",
    )
    _, school_key = api_key_create(school=school, name="Contract")
    _, platform_key = platform_key_create(name="Contract")
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    checked = []

    [delivery_id] = event_fan_out(event_id=event.id) or list(
        subscription.deliveries.values_list("pk", flat=True)
    )
    real = {
        "/api/v1/subscriptions/": lambda: str(subscription.pk),
        "/api/v1/deliveries/": lambda: str(delivery_id),
        "/api/v1/events/": lambda: str(event.pk),
        "/api/v1/event-types/": lambda: "course.created",
        "/api/v1/scheduled-events/": lambda: str(scheduled.pk),
    }

    for operation in operations:
        # Publishing and scheduling are the platform's; everything else is a school's.
        platform = operation.path == "/api/v1/events/" or "scheduled-events" in operation.path
        key = platform_key if platform else school_key
        ids = next(
            (make for prefix, make in real.items() if operation.path.startswith(prefix)), None
        )
        if operation.method.upper() == "DELETE" and "subscriptions" in operation.path:
            ids = lambda: str(SubscriptionFactory(school=school).pk)  # noqa: E731 - a fresh one each time
        _operation_check(operation, {"Authorization": f"Bearer {key}"}, ids)
        checked.append(f"{operation.method.upper()} {operation.path}")

    assert len(checked) == 27
    assert subscription.pk  # the fixtures' objects existed for the generated requests


def _operation_check(operation, headers, real_id):
    """Generated cases for one operation, fitting the schema and not, half of them on a real
    object when the path names one; any failing check fails the test with the case."""

    def with_real_id(pair):
        case, use_real = pair
        if use_real and real_id is not None and case.path_parameters:
            name = next(iter(case.path_parameters))
            case.path_parameters[name] = real_id()
        # The key goes into the case itself, so the checks judge the request as it was sent.
        case.headers = {**(case.headers or {}), **headers}
        return case

    for mode, examples in EXAMPLES_PER_OPERATION.items():

        @given(case=st.tuples(operation.as_strategy(mode), st.booleans()).map(with_real_id))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case):
            case.call_and_validate(
                headers=headers,  # and so the auth checks know the key was given, not generated
                additional_checks=[_not_a_server_error],
                excluded_checks=[positive_data_acceptance],
                timeout=20,
            )

        run()
