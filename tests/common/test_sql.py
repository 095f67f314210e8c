import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from common.sql import (
    columns_of,
    fields_in_order,
    models_from_rows,
    rows_update,
    rows_update_along,
    rows_update_each,
    with_along,
)
from deliveries.models import CircuitState, EndpointState
from events.models import Event
from events.services import event_publish
from schools.models import School
from subscriptions.models import Subscription
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_only_the_rows_named_are_updated_with_each_value_prepared_by_its_field(school):
    events = [
        event_publish(school=school, type="course.created", data={"course": {"id": f"c{n}"}})
        for n in range(3)
    ]
    now = timezone.now()

    # Primary keys as text, as task messages carry them.
    rows_update(Event, [str(events[0].pk), str(events[2].pk)], fanned_out_at=now)

    stored = {event.pk: event.fanned_out_at for event in Event.objects.all()}
    assert stored == {events[0].pk: now, events[1].pk: None, events[2].pk: now}


def test_several_fields_and_no_rows(catalog):
    first, second = SchoolFactory(), SchoolFactory(name="Untouched")

    rows_update(School, [first.pk], name="Renamed", timezone="Europe/Berlin")
    rows_update(School, [], name="Nobody")

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.name, first.timezone) == ("Renamed", "Europe/Berlin")
    assert second.name == "Untouched"


def test_columns_are_found_by_attribute_name_in_the_order_asked():
    # ``type`` is a foreign key stored in a column of another name than its attribute.
    assert columns_of(Event, ["type_id", "id", "school_id"]) == ["type", "id", "school_id"]
    with pytest.raises(KeyError):
        columns_of(Event, ["type"])  # the relation's name, not a column's attribute


def test_each_row_gets_its_own_values_in_one_statement(school, django_assert_num_queries):
    # A one-to-one primary key, text, numbers, times and nulls, as the circuit breakers have.
    first, second, untouched = (
        EndpointState.objects.create(subscription=SubscriptionFactory(school=school))
        for _ in range(3)
    )
    later = timezone.now() + dt.timedelta(seconds=30)
    first.circuit_state, first.consecutive_failures, first.probe_at = CircuitState.OPEN, 5, later
    second.circuit_state, second.opened_count, second.probe_at = CircuitState.HALF_OPEN, 2, None
    untouched.consecutive_failures = 9  # changed in memory only: not in the rows given

    with django_assert_num_queries(1):
        rows_update_each(
            EndpointState,
            [first, second],
            ["circuit_state", "consecutive_failures", "opened_count", "probe_at"],
        )
    rows_update_each(EndpointState, [], ["circuit_state"])

    stored = {
        state.pk: (
            state.circuit_state,
            state.consecutive_failures,
            state.opened_count,
            state.probe_at,
        )
        for state in EndpointState.objects.all()
    }
    assert stored == {
        first.pk: (CircuitState.OPEN, 5, 0, later),
        second.pk: (CircuitState.HALF_OPEN, 0, 2, None),
        untouched.pk: (CircuitState.CLOSED, 0, 0, None),
    }


def test_models_from_rows_convert_each_value_as_the_orm_does(school):
    event = event_publish(
        school=school, type="course.created", data={"course": {"id": "c1", "seats": 30}}
    )
    fields = fields_in_order(Event)
    with connection.cursor() as cursor:
        columns = ", ".join(str(field.column) for field in fields)
        cursor.execute(f"SELECT {columns}, 'extra' FROM events_event")  # noqa: S608
        [loaded] = models_from_rows(Event, fields, cursor.fetchall())

    # The JSON as data, not text; the column after the model's is not the model's.
    assert loaded.data == {"course": {"id": "c1", "seats": 30}}
    assert (loaded.pk, loaded.type_id, loaded.school_id) == (event.pk, "course.created", school.pk)
    assert loaded.created_at == Event.objects.get().created_at
    assert loaded._state.adding is False


def test_models_from_rows_of_some_fields_defer_the_others(school, django_assert_num_queries):
    webhook = SubscriptionFactory(school=school, topics=["course.*"], name="Timetable")
    # Asked in another order than the model's: the columns come in the model's.
    fields = fields_in_order(Subscription, ["topics", "id", "payload_filter"])
    assert [field.attname for field in fields] == ["id", "topics", "payload_filter"]
    with pytest.raises(KeyError):
        fields_in_order(Subscription, ["id", "topic"])  # a misspelt name is not left out
    with connection.cursor() as cursor:
        columns = ", ".join(str(field.column) for field in fields)
        cursor.execute(f"SELECT {columns} FROM subscriptions_subscription")  # noqa: S608
        rows = cursor.fetchall()

    with django_assert_num_queries(0):
        [loaded] = models_from_rows(Subscription, fields, rows)
        assert (loaded.pk, loaded.topics) == (webhook.pk, ["course.*"])
    assert loaded.get_deferred_fields() >= {"name", "url"}
    with django_assert_num_queries(1):
        assert loaded.name == "Timetable"  # read when touched


@pytest.mark.parametrize("with_queries", [False, True])
def test_a_write_along_runs_in_the_statement_it_goes_with(
    school, with_queries, django_assert_num_queries
):
    """A write sent as a ``WITH`` query of another statement is made by that statement, in
    front of the statement's own ``WITH`` queries if it has some (their parameters after its
    own); once it went along, it is not sent again."""
    events = [
        event_publish(school=school, type="course.created", data={"course": {"id": f"c{n}"}})
        for n in range(2)
    ]
    now = timezone.now()
    along = rows_update_along(Event, [events[0].pk], fanned_out_at=now)
    statement = "SELECT n FROM numbers" if with_queries else "SELECT %s::int"
    if with_queries:
        statement = "WITH numbers AS (SELECT %s::int AS n) " + statement

    sql, params = with_along(along, statement, [7])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.fetchall() == [(7,)]
    along.done = True  # as the sender sets it once the statement has run
    with django_assert_num_queries(0):
        along.send()

    stored = {event.pk: event.fanned_out_at for event in Event.objects.all()}
    assert stored == {events[0].pk: now, events[1].pk: None}


def test_a_write_that_went_along_with_nothing_is_sent_alone_once(school, django_assert_num_queries):
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    now = timezone.now()
    along = rows_update_along(Event, [event.pk], fanned_out_at=now)
    assert with_along(None, "SELECT 1", []) == ("SELECT 1", [])

    with django_assert_num_queries(1):
        along.send()
        along.send()

    assert along.done
    event.refresh_from_db()
    assert event.fanned_out_at == now


def test_a_write_cannot_go_along_with_a_recursive_statement(school):
    along = rows_update_along(Event, [], fanned_out_at=timezone.now())

    with pytest.raises(ValueError, match="RECURSIVE"):
        with_along(along, "with recursive n AS (SELECT 1) SELECT * FROM n", [])
    assert not along.done
