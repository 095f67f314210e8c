import sys
import time
import tracemalloc

import pytest
import xmltodict

from webhook_engine.bodies import (
    MAX_OUTPUT_CHARACTERS,
    BodyTemplateError,
    body_compile,
    body_context,
    body_render,
)
from webhook_engine.bodies.library import MAX_VALUE_CHARACTERS, MAX_WORK_CHARACTERS
from webhook_engine.render import body_check_samples

ENVELOPE = {
    "id": "e-1",
    "type": "course.created",
    "school": {"id": 1, "slug": "lycee"},
    "timestamp": "2026-01-05T09:00:00+01:00",
    "data": {"course": {"id": "c1", "name": "Maths"}, "tags": ["a", "b"]},
}
SAMPLES = [("course.created", ENVELOPE)]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% load static %}", "Line 1: the tag {% load %} cannot be used in a webhook body"),
        ('{\n"a": {% include "other.json" %}}', "Line 2: the tag {% include %} cannot be used"),
        ("{% debug %}", "Line 1: the tag {% debug %} cannot be used"),
        ("{% url 'admin:index' %}", "Line 1: the tag {% url %} cannot be used"),
        ("{{ settings.SECRET_KEY }}", "Line 1: 'settings' is not available; a body can use id,"),
        ("{\n\n{{ request.user }}}", "Line 3: 'request' is not available"),
        ("{% if user.is_staff %}{% endif %}", "Line 1: 'user' is not available"),
        ("{{ data.__class__ }}", "Line 1: 'data.__class__' cannot be used: a name in a body"),
        ("{{ data|lower|shout }}", "Line 1: there is no filter named 'shout'."),
        ("{% for x in data.tags %}", "Line 1: the tag {% for %} is not closed; end it with"),
    ],
)
def test_templates_reaching_beyond_the_data_or_broken_are_refused_naming_the_line(source, message):
    with pytest.raises(BodyTemplateError) as raised:
        body_compile(source)

    assert str(raised.value).startswith(message)


def test_output_that_is_not_valid_for_the_content_type_is_refused_naming_the_topic():
    errors = body_check_samples('{"name": {{ data.course.name }}}', "json", SAMPLES)

    assert errors == [
        "With the sample payload of course.created, the body is not valid JSON: Expecting value "
        'at line 1 column 10 ({"name": Maths})'
    ]


def test_xml_output_is_checked_as_xml():
    errors = body_check_samples("<course><id>{{ data.course.id }}</course>", "xml", SAMPLES)

    assert errors == [
        "With the sample payload of course.created, the body is not valid XML: mismatched tag "
        "at line 1 column 17 (<course><id>c1</course>)"
    ]


def test_the_xml_filters_keep_carriage_returns_through_an_xml_parser():
    envelope = {**ENVELOPE, "data": {"note": "line 1\r\nline 2\r"}}
    source = "<n><a>{{ data.note|xml }}</a><b>{{ data|xml_tree }}</b></n>"

    output = body_render(body_compile(source), body_context(envelope, 0))

    parsed = xmltodict.parse(output, strip_whitespace=False)["n"]
    assert parsed["a"] == "line 1\r\nline 2\r"
    assert parsed["b"]["note"] == "line 1\r\nline 2\r"


def test_a_json_body_with_a_number_too_long_to_read_is_refused_with_the_reason():
    source = '{"n": ' + "1" * 4301 + "}"

    errors = body_check_samples(source, "json", SAMPLES)

    assert errors == [
        "With the sample payload of course.created: the body has a number of 4301 digits, "
        "more than JSON parsers read (4300); write it as text"
    ]


def test_numbers_are_read_when_the_interpreter_sets_no_digit_limit():
    """PYTHONINTMAXSTRDIGITS=0 (or sys.set_int_max_str_digits(0)) lifts the limit: a limit of 0
    means none, not that every number is too long."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        errors = body_check_samples('{"n": 42, "m": ' + "1" * 5000 + "}", "json", SAMPLES)
    finally:
        sys.set_int_max_str_digits(limit)

    assert errors == []


def test_a_valid_template_sees_only_plain_data():
    source = (
        '{"event": {{ type|json }}, "what": {{ resource|json }}, "course": '
        '{{ data.course.name|json }}, "tags": [{% for t in data.tags %}{{ t|json }}'
        '{% if not forloop.last %}, {% endif %}{% endfor %}], "school": {{ school.slug|json }}}'
    )

    assert body_check_samples(source, "json", SAMPLES) == []
    output = body_render(body_compile(source), body_context(ENVELOPE, 0))
    assert output == (
        '{"event": "course.created", "what": "course", "course": "Maths", "tags": ["a", "b"], '
        '"school": "lycee"}'
    )


def test_runaway_loops_are_stopped():
    nested = "{% for a in data.tags %}" * 15 + "x" + "{% endfor %}" * 15

    with pytest.raises(BodyTemplateError) as raised:
        body_render(body_compile(nested), body_context(ENVELOPE, 0))

    assert str(raised.value) == "The template's loops ran more than 10000 times."


def test_oversized_output_is_stopped():
    # 99 + 99 * 99 = 9,900 iterations (within the loop budget) of 200 bytes: about 2 MB.
    envelope = {**ENVELOPE, "data": {"items": list(range(99))}}
    source = (
        "{% for a in data.items %}{% for b in data.items %}"
        + "x" * 200
        + "{% endfor %}{% endfor %}"
    )

    with pytest.raises(BodyTemplateError) as raised:
        body_render(body_compile(source), body_context(envelope, 0))

    assert str(raised.value) == f"The body is larger than {MAX_OUTPUT_CHARACTERS} characters."


@pytest.mark.parametrize(
    ("source", "filter_name"),
    [
        ('{{ data.course.name|ljust:"100000000" }}', "ljust"),
        ('{{ data.course.name|center:"100000000" }}', "center"),
        ('{{ data.course.name|stringformat:"50000000s" }}', "stringformat"),
        ('{{ 1.5|floatformat:"300000000" }}', "floatformat"),
        ("{% with a=type|add:type %}{{ a }}{% endwith %}", "add"),
        ('{{ data.tags|join:"xxxxxxxx" }}', "join"),
    ],
)
def test_filters_that_can_blow_a_value_up_are_not_available(source, filter_name):
    with pytest.raises(BodyTemplateError) as raised:
        body_compile(source)

    assert str(raised.value) == f"Line 1: there is no filter named {filter_name!r}."


def test_output_is_stopped_while_rendering_not_after():
    # 10,000 iterations writing 20 kB each would be 200 MB: it stops just past 1 MB.
    envelope = {**ENVELOPE, "data": {"items": list(range(100)), "blob": "x" * 20_000}}
    source = (
        "{% for a in data.items %}{% for b in data.items %}{{ data.blob }}{% endfor %}{% endfor %}"
    )
    started = time.monotonic()

    with pytest.raises(BodyTemplateError, match="larger than"):
        body_render(body_compile(source), body_context(envelope, 0))

    assert time.monotonic() - started < 5


def test_a_filter_failing_on_real_data_is_a_body_error_not_a_crash():
    compiled = body_compile('{"even": {{ data.score|divisibleby:"2"|yesno:"true,false" }}}')

    with pytest.raises(BodyTemplateError) as raised:
        body_render(compiled, body_context({**ENVELOPE, "data": {"score": None}}, 0))

    assert str(raised.value).startswith("The template failed on this event's data:")


@pytest.mark.parametrize(
    "chain",
    [
        "|json" * 40,  # each |json doubles the backslashes of the one before
        "|addslashes" * 40,  # each doubles every backslash
        "|escapejs|addslashes" * 20,
    ],
)
def test_a_chain_of_filters_that_multiplies_a_value_stops_at_the_first_value_too_large(chain):
    # A 4-character value, a template of a few hundred characters: without the value budget
    # this grows to gigabytes before the output budget sees anything.
    envelope = {**ENVELOPE, "data": {"note": '\\"\\"'}}
    compiled = body_compile('{"a": {{ data.note' + chain + " }}}")
    tracemalloc.start()

    with pytest.raises(BodyTemplateError) as raised:
        body_render(compiled, body_context(envelope, 0))

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(raised.value) == (
        f"A value in the template grew past {MAX_VALUE_CHARACTERS} characters; chained "
        "filters such as |json|json multiply a value's size."
    )
    assert peak < 32 * 1024 * 1024  # stopped at the first value too large, not gigabytes later


def test_work_that_writes_little_is_budgeted_too():
    # 10,000 iterations each upper-casing 200 kB and keeping one character: a tiny body, 4 GB
    # of work. It stops when the characters worked through pass the budget.
    envelope = {**ENVELOPE, "data": {"items": list(range(10_000)), "blob": "x" * 200_000}}
    compiled = body_compile(
        '{"a": "{% for i in data.items %}{{ data.blob|upper|first }}{% endfor %}"}'
    )

    with pytest.raises(BodyTemplateError) as raised:
        body_render(compiled, body_context(envelope, 0))

    assert str(raised.value) == (
        f"The template worked through more than {MAX_WORK_CHARACTERS} characters; apply fewer "
        "filters to large values, or fewer times."
    )


def test_the_budget_is_per_render_and_filters_keep_their_arguments_checked():
    compiled = body_compile('{"n": {{ data.course.name|truncatechars:3|json }}}')

    bodies = [body_render(compiled, body_context(ENVELOPE, 0)) for _ in range(500)]

    assert set(bodies) == {'{"n": "Ma…"}'}
    with pytest.raises(BodyTemplateError, match="the filter 'truncatechars' needs an argument"):
        body_compile("{{ data.course.name|truncatechars }}")
