"""A walk through the whole catalog: schemas, samples, rendering, keys, and the seed names."""

import datetime as dt
import importlib
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import xmltodict

from events.catalog import EVENT_TYPES, catalog_fingerprint
from events.models import Event
from events.schemas import data_errors, schema_errors
from events.services import event_publish
from webhook_engine.envelope import envelope_build
from webhook_engine.render import render
from webhook_engine.vendors import SEED_EVENT_NAMES

ROOT = Path(__file__).resolve().parents[2]
# The vendors' public documentation the catalog was drawn from (see its README.md).
VENDOR_DOCS = ROOT / "tests" / "fixtures" / "vendor_docs"
CATALOG = {entry["key"]: entry for entry in EVENT_TYPES}
KEYS = sorted(CATALOG)

# Every event name the seed documents give, verbatim (eduMe: with its sub-type label).
EDUSIGN_HOOKS = [
    "cron_midnight",
    "on_course_created",
    "on_course_start",
    "on_course_edited",
    "on_course_end",
    "on_course_deleted",
    "on_course_locked",
    "on_abscence_report_generated",
    "on_justified_absence",
    "on_request_justified_absence",
    "on_zoom_meeting_created",
    "on_student_sign",
    "on_student_created",
    "on_student_edited",
    "on_student_deleted",
    "on_student_unremoved",
    "on_teacher_sign",
    "on_teacher_created",
    "on_teacher_edited",
    "on_teacher_deleted",
    "on_teacher_unremoved",
    "on_group_created",
    "on_group_edited",
    "on_group_deleted",
    "on_group_unremoved",
    "on_document_completed",
    "on_document_participant_signed",
    "on_survey_answer",
    "on_email_invalid",
    "on_app_parameters_changed",
]
BRAINCERT_TOPICS = [
    "User Created",
    "Group Created",
    "Course Created",
    "Course Bundle Created",
    "Test Created",
    "Live Class Created",
    "User Updated",
    "Course Updated",
    "Course Bundle Updated",
    "Test Updated",
    "Live Class Updated",
    "Product Created",
    "User Deleted",
    "Course Deleted",
    "Course Bundle Deleted",
    "Test Deleted",
    "Live Class Deleted",
    "Product Deleted",
    "Course Enrollment",
    "Test Enrollment",
    "Live Class Enrollment",
    "Course Completed",
    "Test Completed",
    "New Sale",
]
EDUME_EVENTS = [
    ("course.added", ""),
    ("course.deleted", ""),
    ("course.published", ""),
    ("course.unpublished", ""),
    ("course.updated", "title.changed"),
    ("course.updated", "team.assigned"),
    ("course.updated", "team.removed"),
    ("learner.activated", ""),
    ("learner.added", ""),
    ("learner.activity.started", "Course"),
    ("learner.activity.started", "Lesson activity"),
    ("learner.activity.started", "Assessment activity"),
    ("learner.activity.finished", "Course"),
    ("learner.activity.finished", "Lesson activity"),
    ("learner.activity.finished", "Assessment activity"),
    ("learner.activity.finished", "In-course survey"),
    ("learner.activity.finished", "Standalone survey"),
    ("learner.course.completed", ""),
]
EDUDIP_CATEGORIES = ["webinar.created", "webinar.updated", "webinar.deleted"]

SEED_NAMES = [
    *[("Edusign", name, "") for name in EDUSIGN_HOOKS],
    *[("BrainCert", name, "") for name in BRAINCERT_TOPICS],
    *[("eduMe", name, subtype) for name, subtype in EDUME_EVENTS],
    *[("edudip", name, "") for name in EDUDIP_CATEGORIES],
]


@pytest.mark.parametrize("key", KEYS)
def test_every_sample_validates_against_its_types_schema(key):
    entry = CATALOG[key]

    assert schema_errors(entry["json_schema"]) == []
    assert data_errors(entry["json_schema"], entry["sample_payload"]) == []
    assert entry["json_schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert entry["json_schema"]["required"], "a schema requires what identifies the event"
    assert (entry["version"], entry["deprecated"]) == (1, False)
    assert entry["group"]
    assert entry["description"].endswith(".")


@pytest.mark.parametrize("key", KEYS)
def test_every_sample_renders_as_json_and_as_xml(key):
    sample = CATALOG[key]["sample_payload"]
    envelope = envelope_build(
        event_id="4f9c2a8e-5b1d-4e0f-9a7c-3d2e1f0a9b8c",
        event_type=key,
        school_id=1,
        school_slug="lycee-victor-hugo",
        occurred_at=dt.datetime(2026, 3, 26, 8, 0, tzinfo=dt.UTC),
        data=sample,
        tz=ZoneInfo("Europe/Paris"),
    )

    body, content_type = render(envelope, content_type="json")
    assert content_type == "application/json"
    assert json.loads(body) == envelope

    body, content_type = render(envelope, content_type="xml")
    assert content_type == "application/xml"
    parsed = xmltodict.parse(body)["webhook"]
    assert parsed["id"] == "4f9c2a8e-5b1d-4e0f-9a7c-3d2e1f0a9b8c"
    assert parsed["type"] == key
    assert parsed["school"] == {"id": "1", "slug": "lycee-victor-hugo"}
    assert parsed["timestamp"] == "2026-03-26T09:00:00+01:00"
    assert sorted(parsed["data"]) == sorted(sample)


def test_every_sample_is_accepted_by_event_publish(school):
    for key in KEYS:
        event_publish(school=school, type=key, data=CATALOG[key]["sample_payload"])

    assert sorted(Event.objects.values_list("type", flat=True)) == KEYS


@pytest.mark.parametrize("key", KEYS)
def test_every_key_is_a_resource_and_a_past_tense_verb(key):
    assert re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", key)
    _resource, verb = key.split(".")
    # cron.midnight keeps Edusign's name for a clock tick, which has no resource.
    assert verb.endswith("ed") or key == "cron.midnight"


def test_every_seed_event_name_maps_to_exactly_one_catalog_key():
    mapped = [(row.vendor, row.event, row.subtype) for row in SEED_EVENT_NAMES]

    assert sorted(mapped) == sorted(SEED_NAMES)
    assert len(set(mapped)) == len(mapped)  # no seed name maps to two keys
    assert {row.key for row in SEED_EVENT_NAMES} <= set(CATALOG)
    counts = (len(EDUSIGN_HOOKS), len(BRAINCERT_TOPICS), len(EDUME_EVENTS), len(EDUDIP_CATEGORIES))
    assert counts == (30, 24, 18, 3)


def test_every_catalog_key_comes_from_a_seed_platform():
    assert {row.key for row in SEED_EVENT_NAMES} == set(CATALOG)


def test_a_vendor_sub_type_is_a_value_of_the_keys_subtype_field():
    for row in SEED_EVENT_NAMES:
        subtype = CATALOG[row.key]["json_schema"]["properties"].get("subtype")
        if row.subtype:
            assert row.data_subtype in subtype["enum"], row
        else:
            assert row.data_subtype == "", row


def test_the_same_thing_named_by_several_vendors_is_one_key():
    by_key = {}
    for row in SEED_EVENT_NAMES:
        by_key.setdefault(row.key, set()).add(row.vendor)

    assert by_key["course.created"] == {"Edusign", "BrainCert", "eduMe"}
    assert by_key["course.updated"] == {"Edusign", "BrainCert", "eduMe"}
    assert by_key["course.deleted"] == {"Edusign", "BrainCert", "eduMe"}
    assert by_key["group.created"] == {"Edusign", "BrainCert"}
    assert by_key["course.completed"] == {"BrainCert", "eduMe"}


def test_the_latest_catalog_migration_was_written_for_this_catalog():
    migrations = sorted((ROOT / "events" / "migrations").glob("0*.py"))
    fingerprints = [
        getattr(
            importlib.import_module(f"events.migrations.{path.stem}"), "CATALOG_FINGERPRINT", None
        )
        for path in migrations
    ]
    latest = [fingerprint for fingerprint in fingerprints if fingerprint][-1]

    assert latest == catalog_fingerprint(), (
        "The catalog changed since its last migration: add a migration that calls "
        f"event_types_sync with CATALOG_FINGERPRINT = {catalog_fingerprint()!r}."
    )


def test_the_seed_name_lists_above_are_the_ones_in_the_seed_documents():
    def read(prefix):
        [path] = VENDOR_DOCS.glob(f"{prefix}_*.txt")
        return path.read_text(encoding="utf-8")

    edusign = set(re.findall(r"Webhook Name: (\w+)", read("000")))
    edusign |= set(re.findall(r'"type": "(on_\w+|cron_midnight)"', read("001")))
    braincert = re.findall(r"^\d+([A-Z][A-Za-z ]+?)Triggers", read("002"), re.MULTILINE)
    edume = {
        line.strip().lower()
        for line in read("003").splitlines()
        if re.fullmatch(r"(course|learner)\.[a-z.]+", line.strip(), re.IGNORECASE)
    }
    edudip = set(re.findall(r"webinar\.[a-z]+", read("004")))

    assert sorted(edusign) == sorted(EDUSIGN_HOOKS)
    assert braincert == BRAINCERT_TOPICS
    assert edume == {name for name, _ in EDUME_EVENTS}
    assert all(subtype in read("003") for _, subtype in EDUME_EVENTS)
    assert edudip == set(EDUDIP_CATEGORIES)
