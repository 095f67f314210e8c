import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import xmltodict
from hypothesis import given
from hypothesis import strategies as st

from webhook_engine.envelope import (
    datetimes_localize,
    envelope_build,
    to_json,
    to_xml,
    xml_fragment,
    xml_name_decode,
    xml_name_encode,
    xml_text,
)

PARIS = ZoneInfo("Europe/Paris")


def _envelope(occurred_at, data=None, tz=PARIS):
    return envelope_build(
        event_id="7c3e",
        event_type="course.created",
        school_id=3,
        school_slug="lycee",
        occurred_at=occurred_at,
        data=data or {},
        tz=tz,
    )


def test_envelope_has_the_documented_shape_in_the_schools_zone():
    envelope = _envelope(dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC), {"course": {"id": "c1"}})

    assert envelope == {
        "id": "7c3e",
        "type": "course.created",
        "school": {"id": 3, "slug": "lycee"},
        "timestamp": "2026-07-01T10:00:00+02:00",
        "data": {"course": {"id": "c1"}},
    }


@pytest.mark.parametrize(
    ("occurred_at", "rendered"),
    [
        # Paris moves from +01:00 to +02:00 at 01:00 UTC on 2026-03-29.
        (dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC), "2026-03-29T01:30:00+01:00"),
        (dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.UTC), "2026-03-29T04:30:00+02:00"),
        # ... and back at 01:00 UTC on 2026-10-25: 02:30 local happens twice.
        (dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC), "2026-10-25T02:30:00+02:00"),
        (dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC), "2026-10-25T02:30:00+01:00"),
    ],
)
def test_the_timestamp_is_in_the_schools_zone_on_both_sides_of_dst(occurred_at, rendered):
    assert _envelope(occurred_at)["timestamp"] == rendered


def test_datetimes_inside_data_follow_daylight_saving_time():
    data = {
        "before": "2026-03-29T00:30:00+00:00",
        "after": "2026-03-29T02:30:00Z",
        "nested": [{"start": "2026-10-25T00:30:00+00:00"}],
        "not_a_datetime": "2026-03-29",
        "naive": "2026-03-29T00:30:00",
    }

    localized = datetimes_localize(data, PARIS)

    assert localized == {
        "before": "2026-03-29T01:30:00+01:00",
        "after": "2026-03-29T04:30:00+02:00",
        "nested": [{"start": "2026-10-25T02:30:00+02:00"}],
        "not_a_datetime": "2026-03-29",
        "naive": "2026-03-29T00:30:00",
    }


def test_json_is_compact_utf8():
    assert to_json({"name": "Élève", "n": 1}) == '{"name":"Élève","n":1}'.encode()


HOSTILE_KEYS = [
    "first name",
    "1st",
    "xmlns",
    "XmlThing",
    "@attribute",
    "#text",
    "",
    "_x0041_",
    "_x_",
    "a:b",
    "<script>",
    "é",
    "²",
    "emoji😀",
    "tab\tkey",
]


def _xml_parse(body: bytes, lists: set[str]):
    """Parse like a receiver would, decoding element names (see to_xml's documentation)."""

    def decode(path, key, value):
        return xml_name_decode(key), value

    return xmltodict.parse(body, postprocessor=decode, force_list=lists)["webhook"]


def _as_xml_text(value):
    """The JSON tree as the documented XML mapping carries it: text scalars, empty -> None."""
    if isinstance(value, dict):
        return {key: _as_xml_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_xml_text(item) for item in value]
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value


def test_xml_is_the_json_tree_under_a_webhook_root_and_hostile_keys_survive():
    data = {key: f"value of {key!r}" for key in HOSTILE_KEYS}
    data.update(
        {
            "cdata": "a]]>b",
            "markup": "<b>&amp;</b>",
            "tags": ["x", "y", "z"],
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "nothing": None,
            "course": {"id": "c1", "start": "2026-03-29T01:30:00+01:00"},
        }
    )
    envelope = _envelope(dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC), data)

    body = to_xml(envelope)

    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<webhook>')
    assert b"]]>" not in body  # escaped, not left to end a CDATA section
    assert _xml_parse(body, lists={"tags"}) == _as_xml_text(envelope)


def test_characters_xml_cannot_carry_are_replaced_not_dropped():
    body = to_xml({"text": "bell\x07 and nul\x00"})

    assert xmltodict.parse(body)["webhook"]["text"] == "bell\ufffd and nul\ufffd"


def test_carriage_returns_in_text_arrive_as_sent_not_as_line_feeds():
    # A textarea sends "line 1\r\nline 2"; an XML parser reads a raw CR (or CR LF) as LF.
    note = "line 1\r\nline 2\rend"

    body = to_xml({"note": note})
    fragment = xml_fragment({"note": note})

    assert xmltodict.parse(body)["webhook"]["note"] == note
    assert xmltodict.parse(f"<r>{fragment}</r>")["r"]["note"] == note


@given(st.text())
def test_any_text_value_arrives_in_xml_as_the_xml_text_of_it(text):
    body = to_xml({"value": text})

    parsed = xmltodict.parse(body, strip_whitespace=False)["webhook"]["value"]
    assert (parsed or "") == xml_text(text)


@given(st.text(max_size=20))
def test_every_key_encodes_to_a_valid_xml_name_and_decodes_back(key):
    name = xml_name_encode(key)

    xmltodict.parse(f"<{name}/>")  # a valid element name, or this raises
    assert xml_name_decode(name) == key


def test_an_empty_list_is_an_empty_element_in_xml_as_documented():
    body = to_xml({"tags": [], "matrix": [[], ["a"]], "fields": {"roles": []}})

    assert body == (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b"<webhook><tags></tags><matrix></matrix><matrix><item>a</item></matrix>"
        b"<fields><roles></roles></fields></webhook>"
    )
    assert xml_fragment({"tags": []}) == "<tags></tags>"
