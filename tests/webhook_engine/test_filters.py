"""Payload filters: the shape, each comparison, the limits, the missing-field rule, plain words,
and the checks against an event type's schema and sample. No database."""

import pytest
from django.utils import translation

from webhook_engine.filters import (
    MAX_CONDITIONS,
    FilterInvalid,
    filter_compile,
    filter_describe,
    filter_describe_text,
    filter_errors,
    filter_matches,
    filter_schema_errors,
)

DATA = {
    "course": {
        "id": 909850,
        "name": "Introduction to Webhooks",
        "price": 12.5,
        "free": False,
        "subtitle": None,
        "tags": ["intro", "api"],
        "instructors": [{"id": 1, "last_name": "Smith"}, {"id": 2, "last_name": "Doe"}],
    },
    "group": {"id": 12},
}


def c(field, op, value=None, **extra):
    condition = {"field": field, "op": op, **extra}
    if value is not None or op != "exists":
        condition["value"] = value
    return condition


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (c("group.id", "eq", 12), True),
        (c("group.id", "eq", 12.0), True),
        (c("group.id", "eq", "12"), False),
        (c("course.free", "eq", 0), False),  # a boolean is no number
        (c("course.free", "eq", False), True),
        (c("course.subtitle", "eq", None), True),
        (c("group.id", "ne", 13), True),
        (c("group.id", "ne", 12), False),
        (c("group.id", "in", [11, 12]), True),
        (c("group.id", "in", ["12"]), False),
        (c("course.name", "in", ["Introduction to Webhooks", "Other"]), True),
        (c("group.id", "in", [True, 12.0]), True),
        (c("course.free", "in", [0, "false"]), False),  # a boolean is no number nor text
        (c("course.free", "in", [0, False]), True),
        (c("course.subtitle", "in", [None]), True),
        (c("group.id", "not_in", [11, 13]), True),
        (c("group.id", "not_in", [12]), False),
        (c("course.price", "gt", 12), True),
        (c("course.price", "gt", 12.5), False),
        (c("course.price", "gte", 12.5), True),
        (c("course.price", "lt", 13), True),
        (c("course.price", "lte", 12), False),
        (c("course.name", "gt", "A"), True),  # text with text, character by character
        (c("course.name", "gt", 1), False),  # text with a number: never
        (c("course.name", "contains", "Webhooks"), True),
        (c("course.name", "contains", "webhooks"), False),  # case counts
        (c("course.tags", "contains", "api"), True),
        (c("course.tags", "contains", "ap"), False),
        (c("group.id", "contains", 1), False),
        (c("course.name", "starts_with", "Intro"), True),
        (c("course.name", "starts_with", "Webhooks"), False),
        (c("course.name", "ends_with", "Webhooks"), True),
        (c("group.id", "starts_with", "1"), False),
        (c("course.subtitle", "exists"), True),  # present, though null
        (c("course.missing", "exists"), False),
        (c("course.missing", "exists", False), True),
        (c("course.instructors.1.last_name", "eq", "Doe"), True),
        (c("course.instructors.2.last_name", "eq", "Doe"), False),
        (c("course.instructors.last_name", "eq", "Doe"), False),  # no wildcard over a list
    ],
)
def test_each_comparison(condition, expected):
    assert filter_errors(condition) == []
    assert filter_matches(condition, DATA) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "in", "not_in", "gt", "lt", "contains", "starts_with"])
def test_a_field_the_event_lacks_fails_every_comparison(op):
    value = ["x"] if op in ("in", "not_in") else "x"

    assert filter_matches(c("course.nothing", op, value), DATA) is False
    assert filter_matches(c("group.id.deeper", op, value), DATA) is False
    assert filter_matches(c("course.nothing", op, value), "not an object") is False


def test_all_and_any_nest():
    spec = {
        "all": [
            c("group.id", "eq", 12),
            {"any": [c("course.price", "gt", 100), c("course.tags", "contains", "intro")]},
        ]
    }

    assert filter_matches(spec, DATA) is True
    assert filter_matches(spec, {**DATA, "group": {"id": 13}}) is False
    assert filter_matches(spec, {**DATA, "course": {"price": 1}}) is False


def test_no_filter_passes_every_event():
    assert filter_errors(None) == []
    assert filter_compile(None)({}) is True
    assert filter_compile({})("anything") is True


def test_three_levels_of_groups_are_allowed_and_a_fourth_is_refused():
    three = {"all": [{"any": [{"all": [c("group.id", "eq", 12)]}]}]}
    four = {"all": [{"any": [{"all": [{"any": [c("group.id", "eq", 12)]}]}]}]}

    assert filter_errors(three) == []
    assert filter_matches(three, DATA) is True
    assert filter_errors(four) == ["all[0].any[0].all[0]: groups nest at most 3 levels deep."]


def test_at_most_twenty_conditions():
    twenty = {"any": [c("group.id", "eq", n) for n in range(MAX_CONDITIONS)]}
    more = {"any": [c("group.id", "eq", n) for n in range(MAX_CONDITIONS + 1)]}

    assert filter_errors(twenty) == []
    assert filter_errors(more) == ["A filter has at most 20 conditions; this one has 21."]


def test_every_problem_of_a_bad_shape_is_reported_at_once():
    spec = {
        "all": [
            {"field": "", "op": "equals", "value": 1},
            {"any": []},
            "group.id = 12",
            {"field": "group.id", "op": "in", "value": 12},
            {"field": "group..id", "op": "gt", "value": {"a": 1}},
            {"field": "group.id", "op": "eq"},
            {"field": "group.id", "op": "exists", "value": "yes"},
            {"field": "group.id", "op": "eq", "value": 1, "note": "x"},
            {"all": [c("group.id", "eq", 1)], "any": [c("group.id", "eq", 2)]},
        ]
    }

    assert filter_errors(spec) == [
        "all[0]: A condition needs a field: a dotted path such as course.name.",
        'all[0]: "equals" is not a comparison; use one of eq, ne, in, not_in, gt, gte, lt, lte, '
        "contains, starts_with, ends_with, exists.",
        "all[1]: any needs a non-empty list of conditions.",
        "all[2]: give a condition (field, op, value) or a group (all or any).",
        "all[3]: The value of in and not_in must be a non-empty list.",
        'all[4]: "group..id" is not a dotted path such as course.name.',
        "all[4]: An order comparison needs a number or a text.",
        "all[5]: A comparison needs a value.",
        "all[6]: The value of exists must be true or false.",
        "all[7]: unknown keys note; a condition has field, op and value.",
        "all[8]: a group has exactly one key, all or any.",
    ]
    with pytest.raises(FilterInvalid) as raised:
        filter_compile(spec)
    assert len(raised.value.problems) == 11


def test_a_filter_that_is_not_an_object_is_refused():
    assert filter_errors(["group.id", "eq", 12]) == [
        "The filter: give a condition (field, op, value) or a group (all or any)."
    ]
    assert filter_errors({"field": "x", "op": "eq", "value": float("nan")}) == [
        "The filter: The value must be a finite number."
    ]


def test_a_filter_in_plain_words():
    spec = {
        "all": [
            c("course.group.id", "eq", 12),
            {"any": [c("student.class", "in", ["5A", "5B"]), c("student.email", "exists")]},
            c("student.id", "ne", "s-1"),
        ]
    }

    assert filter_describe(spec) == [
        (0, "Every one of these holds:"),
        (1, "course.group.id is 12"),
        (1, "At least one of these holds:"),
        (2, 'student.class is one of "5A", "5B"'),
        (2, "student.email is present"),
        (1, 'student.id is present and is not "s-1"'),
    ]
    assert filter_describe_text(c("group.id", "gte", 3)) == "group.id is at least 3"
    assert filter_describe(None) == [(0, "Every event of the selected types.")]


def test_plain_words_are_in_the_readers_language():
    with translation.override("fr"):
        words = filter_describe({"any": [c("group.id", "eq", 12)]})

    assert words == [(0, "Au moins une de ces conditions est vraie\xa0:"), (1, "group.id vaut 12")]


COURSE_SCHEMA = {
    "type": "object",
    "required": ["course"],
    "properties": {
        "course": {
            "type": "object",
            "properties": {
                "id": {"type": ["string", "integer"]},
                "payment_type": {"type": "string", "enum": ["free", "paid"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "instructors": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"id": {"type": "integer"}}},
                },
            },
        },
        "group": {"type": "object", "properties": {"id": {"type": "integer"}}},
    },
}
COURSE_SAMPLE = {"course": {"id": 1, "level": 3}, "group": {"id": 12}}
TYPES = {"course.created": (COURSE_SCHEMA, COURSE_SAMPLE)}


def test_fields_and_values_the_schema_allows_are_accepted():
    spec = {
        "all": [
            c("course.id", "eq", "c-1"),
            c("course.id", "in", [1, 2]),
            c("course.payment_type", "eq", "paid"),
            c("course.tags", "contains", "api"),
            c("course.instructors.0.id", "gt", 3),
            c("course.level", "gte", 2),  # not declared, but the object allows more
            c("course.level", "eq", "three"),  # one sample's number does not make it one
            c("course.anything.below", "exists"),
            c("group.id", "ne", True),  # ne never proves impossible
        ]
    }

    assert filter_schema_errors(spec, TYPES) == []


def test_a_field_no_selected_type_has_and_impossible_values_are_refused_by_name():
    spec = {
        "all": [
            c("coures.id", "eq", 1),
            c("course.id", "eq", True),
            c("course.payment_type", "eq", "fre"),
            c("course.id.x", "eq", 1),
            c("group.id", "starts_with", "1"),
        ]
    }

    assert filter_schema_errors(spec, TYPES) == [
        "“coures.id is 1”: the selected event types have no field coures.id.",
        "“course.id is true” can never hold: in the selected event types course.id cannot have "
        "that value.",
        '“course.payment_type is "fre"” can never hold: in the selected event types '
        "course.payment_type cannot have that value.",
        "“course.id.x is 1”: the selected event types have no field course.id.x.",
        '“group.id starts with "1"” can never hold: in the selected event types group.id '
        "cannot have that value.",
    ]


def test_a_field_of_one_selected_type_is_enough_and_a_type_without_schema_accepts_anything():
    student = ({"type": "object", "properties": {"student": {"type": "object"}}}, {})
    spec = c("student.class", "eq", "5A")

    assert filter_schema_errors(spec, {**TYPES, "student.created": student}) == []
    assert filter_schema_errors(spec, {"custom.happened": ({}, {})}) == []
    assert filter_schema_errors(spec, TYPES) == [
        '“student.class is "5A"”: the selected event types have no field student.class.'
    ]


@pytest.mark.parametrize("segment", ["²", "①", "٣"])
def test_a_digit_that_is_not_ascii_names_a_key_not_a_list_index(segment):
    spec = {"field": f"course.tags.{segment}", "op": "exists"}

    assert filter_errors(spec) == []
    assert filter_matches(spec, DATA) is False  # a list has no such key; nothing raises
    assert filter_matches({"field": f"k.{segment}", "op": "eq", "value": 1}, {"k": {segment: 1}})
    assert filter_schema_errors(spec, {"course.created": ({"type": "object"}, DATA)}) == []
