"""School life around the courses (Edusign): absences, documents, surveys, e-mail, apps, the
daily tick."""

from __future__ import annotations

from ._fields import (
    DATE,
    DATETIME,
    EMAIL,
    EXTERNAL_ID,
    OPTIONAL_URL,
    TEXT,
    URL,
    data_schema,
    entry,
    enum,
    obj,
    ref,
)

_ABSENCE_FIELDS = {
    "type": {"type": "integer", "description": "The school's absence type code."},
    "comment": TEXT,
    "file_url": OPTIONAL_URL,
    "start": DATETIME,
    "end": DATETIME,
}

ABSENCE = ref(
    "absence",
    **_ABSENCE_FIELDS,
    source={"type": "string", "description": "Who recorded it, for example school."},
    external_id=EXTERNAL_ID,
    external_source={"type": ["string", "null"], "description": "The connector it came from."},
    created_at=DATETIME,
    requested_at={**DATETIME, "description": "When the student asked for the justification."},
)

ABSENCE_REQUEST = ref(
    "absence justification request",
    **_ABSENCE_FIELDS,
    status={"type": "integer", "description": "The request's status code (0: pending)."},
    created_at=DATETIME,
)

EVENT_TYPES = [
    entry(
        "absence.justified",
        group="Absences",
        description=(
            "A student's absence was justified. The uploaded file itself is not sent; "
            "`file_url` points to it."
        ),
        sample={
            "absence": {
                "id": "absence-880",
                "type": 1,
                "comment": "Medical appointment",
                "file_url": "https://files.example.org/absences/absence-880.pdf",
                "external_id": "SIS-ABS-5521",
                "external_source": "connector-name",
                "created_at": "2026-03-26T10:00:00+02:00",
                "start": "2026-03-26T09:00:00+02:00",
                "end": "2026-03-26T12:00:00+02:00",
                "source": "school",
                "requested_at": "2026-03-25T14:00:00+02:00",
            },
            "course": {"id": "course-4711"},
            "student": {"id": "student-42"},
        },
        schema=data_schema(
            "absence", "student", absence=ABSENCE, course=ref("course"), student=ref("student")
        ),
    ),
    entry(
        "absence_request.created",
        group="Absences",
        description="A student asked for an absence to be justified.",
        sample={
            "absence_request": {
                "id": "absence-request-312",
                "type": 1,
                "status": 0,
                "comment": "Doctor visit",
                "file_url": "https://files.example.org/absences/request-312.pdf",
                "created_at": "2026-03-26T10:00:00+02:00",
                "start": "2026-03-26T09:00:00+02:00",
                "end": "2026-03-26T12:00:00+02:00",
            },
            "student": {"id": "student-42"},
        },
        schema=data_schema(
            "absence_request", "student", absence_request=ABSENCE_REQUEST, student=ref("student")
        ),
    ),
    entry(
        "absence_report.generated",
        group="Absences",
        description="A student's absence report (a PDF) was generated for a recipient.",
        sample={
            "absence_report": {
                "url": "https://files.example.org/reports/absences-student-42.pdf",
                "recipient_external_id": "external-recipient-id",
            },
            "student": {"id": "student-42"},
        },
        schema=data_schema(
            "absence_report",
            "student",
            absence_report=obj(
                "url",
                url=URL,
                recipient_external_id={
                    "type": ["string", "integer", "null"],
                    "description": "Who the report is for, in another system.",
                },
            ),
            student=ref("student"),
        ),
    ),
    entry(
        "document.completed",
        group="Documents",
        description=(
            "A document was completed: every participant signed and the final PDF and its proof "
            "file were generated."
        ),
        sample={
            "document": {
                "id": "document-301",
                "url": "https://files.example.org/documents/document-301.pdf",
                "proof_url": "https://files.example.org/documents/document-301-proof.pdf",
            }
        },
        schema=data_schema("document", document=ref("document", url=URL, proof_url=URL)),
    ),
    entry(
        "document.signed",
        group="Documents",
        description=(
            "A participant (an admin, a student or a teacher) signed a document; the document "
            "may still wait for other signatures."
        ),
        sample={
            "document": {"id": "document-301"},
            "participant": {"type": "student", "id": "student-42"},
        },
        schema=data_schema(
            "document",
            "participant",
            document=ref("document"),
            participant=ref("participant", type=enum("admin", "student", "teacher")),
        ),
    ),
    entry(
        "survey.answered",
        group="Surveys",
        description="A student answered a survey.",
        sample={"survey": {"id": "survey-77"}, "student": {"id": "student-42"}},
        schema=data_schema("survey", "student", survey=ref("survey"), student=ref("student")),
    ),
    entry(
        "email.invalidated",
        group="E-mail",
        description=(
            "An e-mail address was found invalid (a bounce or a spam complaint); "
            "`invalid_type` is hard or soft."
        ),
        sample={
            "email": {
                "address": "jean.dupont@example.org",
                "invalid_type": "hard",
                "invalid_reason": "bounce",
            }
        },
        schema=data_schema(
            "email",
            email=obj(
                "address",
                address=EMAIL,
                invalid_type={"type": "string", "description": "hard or soft."},
                invalid_reason={"type": "string", "description": "For example bounce or spam."},
            ),
        ),
    ),
    entry(
        "app_parameters.updated",
        group="Apps",
        description=(
            "An app's configuration parameters were changed; `parameters` has the app's custom "
            "settings as key-value pairs."
        ),
        sample={
            "app": {"id": "app-marketplace-uuid"},
            "parameters": {"customParam1": "value1", "customParam2": True},
        },
        schema=data_schema(
            "parameters", app=ref("app"), parameters={"type": "object", "properties": {}}
        ),
    ),
    entry(
        "cron.midnight",
        group="Schedule",
        description=(
            "The daily tick, one per school per day: at 00:07 UTC, or at the local time the "
            "school chose in its own time zone. `date` is the day it is for (in UTC or in the "
            "school's zone, as the schedule is) and `scheduled_for` the instant it was due; "
            "a run missed while the scheduler was down is sent once, late."
        ),
        sample={"date": "2026-03-26", "scheduled_for": "2026-03-26T00:07:00+00:00"},
        schema=data_schema("date", "scheduled_for", date=DATE, scheduled_for=DATETIME),
    ),
]
