"""Edusign's webhooks, as its "Webhooks" guide and its list of webhooks show them (30 types).

Every body is flat: ``{"type": "on_course_created", "appId": null, ...fields}`` with Edusign's
field names (``courseId``, ``FIRSTNAME``, ``ATTENDANCE_LIST_GENERATED``, ...), dates in the
school's time zone to the second (``2026-03-26T09:00:00+02:00``). ``appId`` is null (a school's
webhook) except in ``on_app_parameters_changed``, where it is the app's id.

Headers, named as Edusign names them: ``x-edusign-webhook-type`` (the body's type),
``x-edusign-school-id``, ``x-edusign-app-id`` (the body's ``appId``, or empty),
``x-edusign-lang`` (the school's language), ``x-edusign-client-id`` (the webhook's id: the
client id a receiver configures) and ``x-edusign-hmac``: HMAC-SHA256 of the body bytes keyed
with the webhook's signing secret, as 64 lowercase hex digits. The body is written as
JavaScript's ``JSON.stringify`` writes it, so a receiver that signs
``JSON.stringify(req.body)`` (Edusign's own library does) gets the same digest.
"""

from __future__ import annotations

import json
from typing import Any

from ..signing import hmac_sha256_hex
from .base import HeaderRequest, Profile
from .mapping import LOCAL_S, TEXT, UPPER, Const, Field, Obj, Rest, Spec
from .names import EDUSIGN, vendor_type_name

APP_ID_NONE = Const(None)

ATTENDEE: dict[str, Spec] = {
    "FIRSTNAME": Field("first_name"),
    "LASTNAME": Field("last_name"),
    "EMAIL": Field("email"),
    "ID": Field("id"),
    "API_ID": Field("external_id"),
}
COURSE_SESSION: dict[str, Spec] = {
    "ID": Field("id"),
    "NAME": Field("name"),
    "START": Field("start"),
    "END": Field("end"),
    "API_ID": Field("external_id"),
}


def _signed(person: str) -> dict[str, Spec]:
    return {
        person: Obj(f"data.{person}", ATTENDEE),
        "course": Obj("data.course", COURSE_SESSION),
        "signature": Obj(
            "data.signature", {"state": Field("state"), "timestamp": Field("signed_at")}
        ),
    }


def _id_of(resource: str, key: str) -> dict[str, Spec]:
    return {key: Field(f"data.{resource}.id")}


ABSENCE: dict[str, Spec] = {
    "ID": Field("id"),
    "TYPE": Field("type"),
    "COMMENT": Field("comment"),
    "COURSE_ID": Field("$data.course.id"),
    "STUDENT_ID": Field("$data.student.id"),
    "SCHOOL_ID": Field("$school.id", TEXT),
    "FILE_URL": Field("file_url"),
    "API_ID": Field("external_id"),
    "API_TYPE": Field("external_source"),
    "DATE_CREATION": Field("created_at"),
    "START": Field("start"),
    "END": Field("end"),
    "SOURCE": Field("source"),
    "REQUEST_DATE": Field("requested_at"),
}
ABSENCE_REQUEST: dict[str, Spec] = {
    "ID": Field("id"),
    "TYPE": Field("type"),
    "STUDENT_ID": Field("$data.student.id"),
    "SCHOOL_ID": Field("$school.id", TEXT),
    "FILE_URL": Field("file_url"),
    "STATUS": Field("status"),
    "COMMENT": Field("comment"),
    "DATE_CREATED": Field("created_at"),
    "START": Field("start"),
    "END": Field("end"),
}

_FIELDS: dict[str, dict[str, Spec]] = {
    "student.signed": _signed("student"),
    "teacher.signed": _signed("teacher"),
    **{
        f"{resource}.{verb}": _id_of(resource, f"{resource}Id")
        for resource in ("student", "teacher", "group")
        for verb in ("created", "updated", "deleted", "restored")
    },
    **{
        f"course.{verb}": _id_of("course", "courseId")
        for verb in ("created", "updated", "deleted", "started", "ended")
    },
    "course.locked": {
        "courseId": Field("data.course.id"),
        "ATTENDANCE_LIST_GENERATED": Field("data.attendance_list_url"),
    },
    "document.completed": {
        "documentId": Field("data.document.id"),
        "DOCUMENT_URL": Field("data.document.url"),
        "DOCUMENT_PROOF_URL": Field("data.document.proof_url"),
    },
    "document.signed": {
        "documentId": Field("data.document.id"),
        "participant": Obj("data.participant", {"type": Field("type", UPPER), "id": Field("id")}),
    },
    "survey.answered": {
        "surveyId": Field("data.survey.id"),
        "studentId": Field("data.student.id"),
    },
    "absence.justified": {"absence": Obj("data.absence", ABSENCE)},
    "absence_request.created": {"absenceRequest": Obj("data.absence_request", ABSENCE_REQUEST)},
    "absence_report.generated": {
        "studentId": Field("data.student.id"),
        "externalId": Field("data.absence_report.recipient_external_id"),
        "pdfUrl": Field("data.absence_report.url"),
    },
    "email.invalidated": {
        "email": Field("data.email.address"),
        "invalid_type": Field("data.email.invalid_type"),
        "invalid_reason": Field("data.email.invalid_reason"),
    },
    "zoom_meeting.created": {
        "COURSE_ID": Field("data.course.id"),
        # Passed on as Zoom gave it; always with ID, URL, START and END.
        "meeting": Obj(
            "data.zoom_meeting",
            {
                "ID": Field("id"),
                "URL": Field("url"),
                "START": Field("start"),
                "END": Field("end"),
            },
            rest=Rest(exclude=("id", "url", "start", "end"), camel=False),
        ),
    },
    "app_parameters.updated": {"parameters": Field("data.parameters")},
    "cron.midnight": {},
}


def _body(event_type: str, fields: dict[str, Spec]) -> dict[str, Spec]:
    app_id = Field("data.app.id") if event_type == "app_parameters.updated" else APP_ID_NONE
    return {"type": Const(vendor_type_name(event_type, EDUSIGN)), "appId": app_id, **fields}


EVENTS: dict[str, Any] = {key: _body(key, fields) for key, fields in _FIELDS.items()}

HEADER_NAMES = (
    "x-edusign-webhook-type",
    "x-edusign-school-id",
    "x-edusign-app-id",
    "x-edusign-lang",
    "x-edusign-hmac",
    "x-edusign-client-id",
)


def headers(request: HeaderRequest) -> dict[str, str]:
    """Edusign's headers for one request, ``x-edusign-hmac`` signed with the newest secret."""
    try:
        app_id = json.loads(request.body).get("appId")
    except (ValueError, AttributeError):
        app_id = None
    return dict(
        zip(
            HEADER_NAMES,
            (
                vendor_type_name(request.event_type, EDUSIGN),
                str(request.school_id),
                str(app_id) if app_id is not None else "",
                request.school_language,
                hmac_sha256_hex(secret=request.secrets[0], body=request.body),
                request.webhook_id,
            ),
            strict=True,
        )
    )


PROFILE = Profile(
    key="edusign",
    label="Edusign",
    vendor=EDUSIGN,
    content_types=("json",),
    dates=LOCAL_S,
    events=EVENTS,
    body_doc="flat `{type, appId, ...fields}` with Edusign's event names and field names",
    dates_doc="the school's time zone to the second, `2026-03-26T09:00:00+02:00`",
    headers_doc=(
        "`x-edusign-webhook-type`, `x-edusign-school-id`, `x-edusign-app-id`, "
        "`x-edusign-lang`, `x-edusign-client-id` (the webhook's id), `x-edusign-hmac`"
    ),
    signature_doc=(
        "`x-edusign-hmac`: hex HMAC-SHA256 of the body, keyed with the webhook's signing secret "
        "(its client secret; the newest one after a rotation)"
    ),
    headers=headers,
)
