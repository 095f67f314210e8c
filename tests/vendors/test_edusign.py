"""Golden tests: Edusign's header and body example and its 30 payload samples, from our catalog's
data through the Edusign profile, and the headers as a receiver gets them."""

import hashlib
import hmac
import json

import pytest

from deliveries.models import DeliveryAttempt
from deliveries.services import deliveries_attempt
from tests.schools.factories import SchoolFactory
from tests.vendors.golden import shape_differences, vendor_body, vendor_delivery, vendor_samples

pytestmark = pytest.mark.django_db

EDUSIGN = vendor_samples("edusign")
PAYLOADS = {payload["type"]: payload for payload in EDUSIGN["payloads"]}
# Edusign's samples say +02:00 on 26 March 2026: a school in Athens (EET before its DST).
ZONE = "Europe/Athens"

STUDENT = {
    "id": "student-uuid",
    "first_name": "Jean",
    "last_name": "Dupont",
    "email": "jean.dupont@example.org",
    "external_id": "external-api-id",
}
TEACHER = {
    "id": "teacher-uuid",
    "first_name": "Marie",
    "last_name": "Martin",
    "email": "marie.martin@example.org",
    "external_id": "external-api-id",
}
SESSION = {
    "id": "course-uuid",
    "name": "Mathematics 101",
    "start": "2026-03-26T07:00:00Z",
    "end": "2026-03-26T10:00:00Z",
    "external_id": "external-api-id",
}
# The webhook's signing secret, which is its Edusign client secret.
SECRET = "whsec_dGhlLWVkdXNpZ24tY2xpZW50LXNlY3JldC0zMmJ5dGU="
# Edusign's own school id: ours is the school's id.
SCHOOL_ID = {"absence.SCHOOL_ID", "absenceRequest.SCHOOL_ID"}


def _lifecycle(resource: str) -> dict:
    names = {
        "created": "created",
        "updated": "edited",
        "deleted": "deleted",
        "restored": "unremoved",
    }
    return {
        f"on_{resource}_{name}": (f"{resource}.{verb}", {resource: {"id": f"{resource}-uuid"}})
        for verb, name in names.items()
    }


# Edusign type: (our event type, our data)
CASES = {
    "on_student_sign": (
        "student.signed",
        {
            "student": STUDENT,
            "course": SESSION,
            "signature": {"state": True, "signed_at": "2026-03-26T07:15:00Z"},
        },
    ),
    "on_teacher_sign": (
        "teacher.signed",
        {
            "teacher": TEACHER,
            "course": SESSION,
            "signature": {"state": True, "signed_at": "2026-03-26T07:05:00Z"},
        },
    ),
    **_lifecycle("student"),
    **_lifecycle("teacher"),
    **_lifecycle("group"),
    **{
        f"on_course_{name}": (f"course.{verb}", {"course": {"id": "course-uuid"}})
        for verb, name in {
            "created": "created",
            "updated": "edited",
            "deleted": "deleted",
            "started": "start",
            "ended": "end",
        }.items()
    },
    "on_course_locked": (
        "course.locked",
        {
            "course": {"id": "course-uuid"},
            "attendance_list_url": "https://s3.amazonaws.com/...",
        },
    ),
    "on_document_completed": (
        "document.completed",
        {
            "document": {
                "id": "document-uuid",
                "url": "https://s3.amazonaws.com/.../document.pdf",
                "proof_url": "https://s3.amazonaws.com/.../proof.pdf",
            }
        },
    ),
    "on_document_participant_signed": (
        "document.signed",
        {
            "document": {"id": "document-uuid"},
            "participant": {"type": "student", "id": "participant-uuid"},
        },
    ),
    "on_survey_answer": (
        "survey.answered",
        {"survey": {"id": "survey-uuid"}, "student": {"id": "student-uuid"}},
    ),
    "on_justified_absence": (
        "absence.justified",
        {
            "absence": {
                "id": "absence-uuid",
                "type": 1,
                "comment": "Medical appointment",
                "file_url": "https://...",
                "external_id": "external-api-id",
                "external_source": "connector-name",
                "created_at": "2026-03-26T08:00:00Z",
                "start": "2026-03-26T07:00:00Z",
                "end": "2026-03-26T10:00:00Z",
                "source": "school",
                "requested_at": "2026-03-25T12:00:00Z",
            },
            "course": {"id": "course-uuid"},
            "student": {"id": "student-uuid"},
        },
    ),
    "on_request_justified_absence": (
        "absence_request.created",
        {
            "absence_request": {
                "id": "absence-request-uuid",
                "type": 1,
                "status": 0,
                "comment": "Doctor visit",
                "file_url": "https://...",
                "created_at": "2026-03-26T08:00:00Z",
                "start": "2026-03-26T07:00:00Z",
                "end": "2026-03-26T10:00:00Z",
            },
            "student": {"id": "student-uuid"},
        },
    ),
    "on_abscence_report_generated": (
        "absence_report.generated",
        {
            "student": {"id": "student-uuid"},
            "absence_report": {
                "url": "https://s3.amazonaws.com/.../report.pdf",
                "recipient_external_id": "external-recipient-id",
            },
        },
    ),
    "on_email_invalid": (
        "email.invalidated",
        {
            "email": {
                "address": "jean.dupont@example.org",
                "invalid_type": "hard",
                "invalid_reason": "bounce",
            }
        },
    ),
    "on_zoom_meeting_created": (
        "zoom_meeting.created",
        {
            "course": {"id": "course-uuid"},
            "zoom_meeting": {
                "id": "zoom-meeting-id",
                "url": "https://zoom.us/j/123456",
                "start": "2026-03-26T07:00:00Z",
                "end": "2026-03-26T10:00:00Z",
            },
        },
    ),
    "on_app_parameters_changed": (
        "app_parameters.updated",
        {
            "app": {"id": "app-marketplace-uuid"},
            "parameters": {"customParam1": "value1", "customParam2": True},
        },
    ),
    "cron_midnight": (
        "cron.midnight",
        {"date": "2026-03-26", "scheduled_for": "2026-03-26T00:07:00+00:00"},
    ),
}


def test_every_edusign_payload_has_a_case():
    assert sorted(CASES) == sorted(PAYLOADS)
    assert len(CASES) == 30


@pytest.mark.parametrize("edusign_type", sorted(CASES))
def test_the_edusign_profile_sends_what_edusign_sends(edusign_type):
    event_type, data = CASES[edusign_type]
    sample = PAYLOADS[edusign_type]["body"]

    body, _ = vendor_body(
        SchoolFactory(timezone=ZONE),
        profile="edusign",
        event_type=event_type,
        data=data,
        occurred_at="2026-03-26T07:00:00+00:00",
    )

    assert shape_differences(body, sample, placeholders=SCHOOL_ID) == []
    assert list(body)[:2] == ["type", "appId"]


def test_the_edusign_example_body_and_headers(receiver):
    # seeds/000: the body of on_course_created and every header, as Edusign names them.
    example = EDUSIGN["example"]
    school = SchoolFactory(timezone=ZONE, language="en")
    delivery = vendor_delivery(
        school,
        profile="edusign",
        event_type="course.created",
        data={"course": {"id": "course-uuid"}},
        occurred_at="2026-03-26T07:00:00+00:00",
        url=receiver.url("/edusign"),
        secret=SECRET,
    )
    body = json.loads(bytes(delivery.body))
    # appId is "string or null" (base_payload): null for a school's webhook.
    assert (
        shape_differences(
            body,
            example["body"],
            placeholders={"appId", "courseId"},
            allowed_types={"appId": {"null"}},
        )
        == []
    )

    [attempt] = deliveries_attempt(delivery_ids=[delivery.pk])

    [received] = receiver.received("/edusign")
    sent = DeliveryAttempt.objects.get(pk=attempt.pk).request_headers
    assert [name for name in example["headers"] if name not in sent] == []  # as Edusign names them
    assert {name: received.headers[name] for name in example["headers"]} == {
        "x-edusign-webhook-type": "on_course_created",
        "x-edusign-school-id": str(school.id),
        "x-edusign-app-id": "",
        "x-edusign-lang": "en",
        "x-edusign-hmac": hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest(),
        "x-edusign-client-id": str(delivery.subscription_id),
    }
    assert json.loads(received.body) == body


def test_an_apps_parameters_change_names_the_app_in_the_body_and_the_header(receiver):
    event_type, data = CASES["on_app_parameters_changed"]
    delivery = vendor_delivery(
        SchoolFactory(timezone=ZONE),
        profile="edusign",
        event_type=event_type,
        data=data,
        occurred_at="2026-03-26T07:00:00+00:00",
        url=receiver.url("/app"),
    )

    deliveries_attempt(delivery_ids=[delivery.pk])

    [received] = receiver.received("/app")
    assert json.loads(received.body)["appId"] == "app-marketplace-uuid"
    assert received.headers["x-edusign-app-id"] == "app-marketplace-uuid"
    assert received.headers["x-edusign-webhook-type"] == "on_app_parameters_changed"
