"""The event reference: docs/events.md generated from the catalog, and the admin page."""

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from events.catalog import EVENT_TYPES
from events.models import EventType
from events.reference import reference_markdown
from webhook_engine.vendors import SEED_EVENT_NAMES

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_the_committed_docs_are_what_the_catalog_generates():
    assert DOCS.read_text(encoding="utf-8") == reference_markdown(EVENT_TYPES, SEED_EVENT_NAMES)
    call_command("event_catalog_docs", "--check")  # raises if they drifted


def test_the_docs_command_writes_the_file_and_check_fails_when_it_drifted(tmp_path):
    output = tmp_path / "events.md"

    call_command("event_catalog_docs", "--output", str(output))
    assert output.read_text(encoding="utf-8") == DOCS.read_text(encoding="utf-8")

    output.write_text(output.read_text(encoding="utf-8").replace("course.started", "x"))
    with pytest.raises(CommandError, match="is not up to date with the event catalog"):
        call_command("event_catalog_docs", "--check", "--output", str(output))


def test_the_docs_have_every_type_with_its_sample_and_schema():
    text = DOCS.read_text(encoding="utf-8")

    for entry in EVENT_TYPES:
        assert f"### `{entry['key']}`" in text
        assert json.dumps(entry["sample_payload"], indent=2, ensure_ascii=False) in text
        assert json.dumps(entry["json_schema"], indent=2, ensure_ascii=False) in text


def test_the_docs_have_the_seed_name_mapping_table():
    text = DOCS.read_text(encoding="utf-8")

    assert "| Platform | Event | Sub-type | Key | `data.subtype` | Note |" in text
    assert (
        "| Edusign | `on_abscence_report_generated` |  | "
        "[`absence_report.generated`](#absence_reportgenerated) |  |  |"
    ) in text
    assert (
        "| eduMe | `course.updated` | `title.changed` | [`course.updated`](#courseupdated) | "
        "`title.changed` |  |"
    ) in text
    for row in SEED_EVENT_NAMES:
        assert f"| {row.vendor} | `{row.event}` |" in text


def test_the_admin_serves_the_reference_linked_from_the_type_list(admin_client):
    EventType.objects.create(
        key="grade.published",
        group="Grades",
        description="A grade was published in `grades`.",
        sample_payload={"grade": {"id": 1}},
        json_schema={"type": "object", "required": ["grade"]},
    )

    listing = admin_client.get("/admin/events/eventtype/")
    page = admin_client.get("/admin/events/eventtype/reference/")

    assert listing.status_code == 200
    assert 'href="/admin/events/eventtype/reference/"' in listing.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    assert f"{len(EVENT_TYPES) + 1} event types" in html
    assert "<h3><code>grade.published</code></h3>" in html
    assert "A grade was published in <code>grades</code>." in html
    assert "<h3><code>course.updated</code></h3>" in html
    assert "<code>on_request_justified_absence</code>" in html
    assert "&quot;attendance_list_url&quot;" in html  # samples and schemas are escaped JSON
    # How each vendor profile sends a type, field by field, with the sample as it arrives.
    assert "As the Edusign profile sends it\n      (<code>on_student_sign</code>)" in html
    assert (
        "<tr><td><code>student.FIRSTNAME</code></td><td><code>data.student.first_name</code>"
        in html
    )
    assert "&quot;type&quot;: &quot;learner.activity.started&quot;" in html


def test_the_docs_show_each_vendors_mapping_and_sample_for_each_type():
    text = DOCS.read_text(encoding="utf-8")

    assert "| Profile | Body | Dates | Headers | Signature |" in text
    assert (
        "<details><summary>eduMe (<code>edume</code>): <code>learner.added</code></summary>" in text
    )
    assert "| `payload.courses` | `data.courses`, else `data.course` as a list of one |" in text
    assert "| `payload.date_added` | `data.user.created_at` |" in text
    assert '"x-edusign' not in text  # headers are in the profile table, not per type


def test_the_reference_page_needs_an_admin_login(client):
    response = client.get("/admin/events/eventtype/reference/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_operator_adds_a_type_whose_sample_matches_its_schema(admin_client):
    response = admin_client.post(
        "/admin/events/eventtype/add/",
        {
            "key": "grade.published",
            "group": "Grades",
            "description": "A grade was published.",
            "sample_payload": json.dumps({"grade": {"id": 1}}),
            "json_schema": json.dumps({"type": "object", "required": ["grade"]}),
            "version": 1,
        },
    )

    assert response.status_code == 302
    row = EventType.objects.get(key="grade.published")
    assert (row.group, row.shipped, row.deprecated) == ("Grades", False, False)


def test_a_type_whose_sample_fails_its_schema_is_refused(admin_client):
    response = admin_client.post(
        "/admin/events/eventtype/add/",
        {
            "key": "grade.published",
            "group": "Grades",
            "description": "A grade was published.",
            "sample_payload": json.dumps({"mark": 12}),
            "json_schema": json.dumps({"type": "object", "required": ["grade"]}),
            "version": 1,
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "sample_payload": [
            "The sample does not match the schema:",
            "sample.grade: 'grade' is a required property",
        ]
    }
    assert not EventType.objects.filter(key="grade.published").exists()


def test_a_type_with_an_invalid_schema_is_refused(admin_client):
    response = admin_client.post(
        "/admin/events/eventtype/add/",
        {
            "key": "grade.published",
            "group": "Grades",
            "description": "A grade was published.",
            "sample_payload": "{}",
            "json_schema": json.dumps({"type": "thing"}),
            "version": 1,
        },
    )

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["json_schema"]
    assert not EventType.objects.filter(key="grade.published").exists()


def test_a_type_without_sample_or_schema_is_saved_with_empty_ones(admin_client):
    response = admin_client.post(
        "/admin/events/eventtype/add/",
        {
            "key": "grade.published",
            "group": "Grades",
            "sample_payload": "",
            "json_schema": "",
            "version": 1,
        },
    )

    assert response.status_code == 302
    row = EventType.objects.get(key="grade.published")
    assert (row.sample_payload, row.json_schema) == ({}, {})


@pytest.mark.parametrize(
    ("sample", "error"),
    [
        ("NaN", "data is nan, which JSON cannot represent."),
        ('{"mark": 1e309}', "data.mark is inf, which JSON cannot represent."),
        ("[" * 5000 + "]" * 5000, "The JSON is nested more than 32 levels deep."),
        ('{"a": "\\u0000"}', "data.a contains a NUL character (U+0000), which cannot be stored."),
    ],
)
def test_a_sample_the_database_cannot_store_is_a_form_error(admin_client, sample, error):
    response = admin_client.post(
        "/admin/events/eventtype/add/",
        {"key": "grade.published", "group": "Grades", "sample_payload": sample, "version": 1},
    )

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["sample_payload"]
    assert message.startswith(error)
    assert not EventType.objects.filter(key="grade.published").exists()


def test_shipped_types_are_read_only_in_the_admin(admin_client):
    response = admin_client.post(
        "/admin/events/eventtype/course.created/change/",
        {"group": "Mine", "description": "Changed", "version": 5},
    )

    row = EventType.objects.get(key="course.created")
    assert response.status_code == 302
    assert (row.group, row.version) == ("Courses", 1)
