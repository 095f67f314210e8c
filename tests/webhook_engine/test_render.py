import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import xmltodict

from webhook_engine.bodies import PRESETS, BodyTemplateError, body_compile
from webhook_engine.envelope import envelope_build
from webhook_engine.render import render

# BrainCert's "User Created" sample, and Edusign's on_course_created body fields (the seeds).
BRAINCERT_USER = {
    "name": "John Doe",
    "user_id": 789012,
    "email": "john.doe@example.com",
    "date_added": "2024-02-14T10:30:00+00:00",
    "avatar_url": None,
    "groups": [{"group_id": "101", "group_name": "Web Development Enthusiasts"}],
}
EDUSIGN_COURSE = {"courseId": "course_id_placeholder"}


def _envelope(event_type, data):
    return envelope_build(
        event_id="0f8b1c2e-1111-4a4a-9c9c-123456789abc",
        event_type=event_type,
        school_id=3,
        school_slug="lycee",
        occurred_at=dt.datetime(2024, 2, 14, 10, 30, tzinfo=dt.UTC),
        data=data,
        tz=ZoneInfo("UTC"),
    )


def test_the_standard_envelope_renders_as_json_or_xml_with_matching_content_types():
    envelope = _envelope("course.created", EDUSIGN_COURSE)

    json_body, json_type = render(envelope, content_type="json")
    xml_body, xml_type = render(envelope, content_type="xml")

    assert (json_type, xml_type) == ("application/json", "application/xml")
    assert json.loads(json_body) == envelope
    assert xmltodict.parse(xml_body)["webhook"]["data"] == {"courseId": "course_id_placeholder"}


def test_the_braincert_preset_reproduces_braincerts_envelope():
    envelope = _envelope("user.created", BRAINCERT_USER)

    body, _ = render(
        envelope,
        content_type="json",
        body=body_compile(PRESETS["braincert"]["json"]),
        unix_timestamp=1707906600,
    )

    assert json.loads(body) == {
        "id": "0f8b1c2e-1111-4a4a-9c9c-123456789abc",
        "resource": "user",
        "action": "created",
        "created_at": "2024-02-14T10:30:00+00:00",
        "timestamp": 1707906600,
        "payload": BRAINCERT_USER,
    }


def test_the_edusign_preset_is_flat_with_edusigns_type_name():
    body, _ = render(
        _envelope("course.created", EDUSIGN_COURSE),
        content_type="json",
        body=body_compile(PRESETS["edusign"]["json"]),
    )

    assert json.loads(body) == {
        "type": "on_course_created",
        "appId": None,
        "courseId": "course_id_placeholder",
    }


def test_the_edume_preset_has_type_payload_and_timestamp():
    data = {"course": {"courseId": 22299}, "version": 1}

    body, _ = render(
        _envelope("course.created", data),
        content_type="json",
        body=body_compile(PRESETS["edume"]["json"]),
    )

    assert set(json.loads(body)) == {"type", "payload", "timestamp"}
    assert json.loads(body)["payload"] == data
    assert json.loads(body)["timestamp"] == "2024-02-14T10:30:00+00:00"


@pytest.mark.parametrize("vendor", sorted(PRESETS))
def test_every_preset_has_an_xml_form_that_parses(vendor):
    body, content_type = render(
        _envelope("user.created", BRAINCERT_USER),
        content_type="xml",
        body=body_compile(PRESETS[vendor]["xml"]),
    )

    assert content_type == "application/xml"
    assert set(xmltodict.parse(body)) == {"webhook"}


def test_a_body_whose_output_does_not_parse_for_this_event_is_an_error():
    compiled = body_compile('{"name": {{ data.name }}}')  # forgot |json

    with pytest.raises(BodyTemplateError) as raised:
        render(_envelope("user.created", BRAINCERT_USER), content_type="json", body=compiled)

    assert str(raised.value).startswith("the body is not valid JSON: Expecting value")


def test_the_presets_use_each_vendors_own_event_names():
    signed = _envelope("student.signed", {"student": {"ID": "s-1"}})
    added = _envelope("course.created", {"course": {"courseId": 22299}})

    edusign, _ = render(signed, content_type="json", body=body_compile(PRESETS["edusign"]["json"]))
    edume, _ = render(added, content_type="json", body=body_compile(PRESETS["edume"]["json"]))

    assert json.loads(edusign)["type"] == "on_student_sign"  # Edusign's name, not ours
    assert json.loads(edume)["type"] == "course.added"


def test_an_xml_body_template_is_sent_as_a_document_with_its_declaration():
    body, _ = render(
        _envelope("course.created", EDUSIGN_COURSE),
        content_type="xml",
        body=body_compile("<course><id>{{ data.courseId|xml }}</id></course>"),
    )

    assert body == (
        b'<?xml version="1.0" encoding="utf-8"?>\n<course><id>course_id_placeholder</id></course>'
    )


@pytest.mark.parametrize("vendor", sorted(PRESETS))
def test_every_xml_preset_starts_with_its_declaration(vendor):
    body, _ = render(
        _envelope("user.created", BRAINCERT_USER),
        content_type="xml",
        body=body_compile(PRESETS[vendor]["xml"]),
    )

    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<webhook>')
    assert body.count(b"<?xml") == 1


def test_an_xml_template_pasted_with_a_byte_order_mark_is_still_one_well_formed_document():
    body, _ = render(
        _envelope("course.created", EDUSIGN_COURSE),
        content_type="xml",
        body=body_compile("\ufeff<course><id>{{ data.courseId|xml }}</id></course>"),
    )

    assert body == (
        b'<?xml version="1.0" encoding="utf-8"?>\n<course><id>course_id_placeholder</id></course>'
    )
    assert xmltodict.parse(body) == {"course": {"id": "course_id_placeholder"}}


def test_an_xml_template_that_starts_with_a_processing_instruction_still_gets_its_declaration():
    source = '<?xml-stylesheet type="text/xsl" href="course.xsl"?><course/>'

    body, _ = render(
        _envelope("course.created", EDUSIGN_COURSE), content_type="xml", body=body_compile(source)
    )

    assert body == b'<?xml version="1.0" encoding="utf-8"?>\n' + source.encode()
