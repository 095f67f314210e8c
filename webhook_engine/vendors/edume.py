"""eduMe's webhooks, as its "Webhook Payloads" page shows them (18 events and sub-types).

Every body is ``{type, payload: {..., version: 1}, timestamp}`` with eduMe's event names
(``course.added``, ``learner.activity.started``, ...), the sub-type in ``payload.type``
(``title.changed``, ``lesson``, ...), eduMe's field names (``courseId``, ``groupId``, ``eId``)
and every date in UTC with milliseconds (``2022-07-13T12:03:54.530Z``). The completion of a
course is sent with the type ``course.completed`` and no ``version``, as eduMe's sample shows;
the platform's other properties of its learner, course and group are passed on, their names in
camelCase (``is_anonymous`` -> ``isAnonymous``). eduMe documents no headers and no signature.
"""

from __future__ import annotations

from typing import Any

from .base import Profile
from .mapping import UTC_MS, Const, Each, Field, FirstOf, FullName, Obj, Rest, Spec
from .names import EDUME, vendor_type_name

VERSION = Const(1)
GROUP = Obj("data.group", {"groupId": Field("id")})
COURSE_ID: dict[str, Spec] = {"courseId": Field("id")}
LEARNER = Obj(
    "data.user",
    {
        "eId": Field("uuid"),
        "userId": Field("id"),
        "identifiers": Each(
            "identifiers",
            {
                "id": Field("id"),
                "key": Field("key"),
                "value": Field("value"),
                "createdAt": Field("created_at"),
            },
        ),
    },
)

COURSE_EVENT: dict[str, Spec] = {
    "group": GROUP,
    "teams": Each("data.teams", {"teamId": Field("id")}),
    "course": Obj("data.course", {"courseId": Field("id"), "courseKey": Field("key")}),
    "modules": Each("data.modules", {"moduleId": Field("id")}),
    "version": VERSION,
}
LEARNER_COURSES: dict[str, Spec] = {
    "user": LEARNER,
    "group": GROUP,
    "courses": FirstOf(
        Each("data.courses", COURSE_ID), Each("data.course", COURSE_ID, single=True)
    ),
    "version": VERSION,
}
ACTIVITY: dict[str, Spec] = {
    "type": Field("data.subtype"),
    "user": LEARNER,
    "group": GROUP,
    "course": Obj("data.course", COURSE_ID),
    "module": Obj("data.module", {"moduleId": Field("id")}),
    "lesson": Obj("data.lesson", {"lessonId": Field("id")}),
    "assessment": Obj("data.assessment", {"assessmentId": Field("id")}),
    "survey": Obj(
        "data.survey", {"type": Field("type"), "status": Field("status"), "surveyId": Field("id")}
    ),
    "version": VERSION,
}
# The catalog's own course fields that eduMe does not have are not passed on.
_CATALOG_COURSE_FIELDS = (
    "id",
    "name",
    "key",
    "created_at",
    "image_url",
    "slug",
    "subtitle",
    "description",
    "payment_type",
    "start",
    "end",
    "external_id",
    "instructors",
)
COURSE_COMPLETED: dict[str, Spec] = {
    "user": Obj(
        "data.user",
        {
            "id": Field("id"),
            "email": Field("email"),
            "firstName": Field("first_name"),
            "lastName": Field("last_name"),
            "name": FirstOf(Field("name"), FullName("first_name", "last_name")),
            "identifiers": Each(
                "identifiers",
                {"key": Field("key"), "value": Field("value"), "createdAt": Field("created_at")},
            ),
        },
        rest=Rest(
            exclude=("id", "email", "first_name", "last_name", "name", "identifiers", "uuid")
        ),
    ),
    "course": Obj(
        "data.course",
        {
            "id": Field("id"),
            "title": Field("name"),
            "courseKey": Field("key"),
            "createdAt": Field("created_at"),
            "courseImageUrl": Field("image_url"),
        },
        rest=Rest(exclude=_CATALOG_COURSE_FIELDS),
    ),
    "parentGroup": Obj(
        "data.group", {"id": Field("id"), "name": Field("name")}, rest=Rest(("id", "name"))
    ),
    "completion": {
        "overallAssessmentScore": Field("data.scores.overall_assessment_score"),
        "overallLessonScore": Field("data.scores.overall_lesson_score"),
        "scoresBreakdown": Each(
            "data.scores.breakdown",
            {
                "id": Field("id"),
                "activityKey": Field("activity_key"),
                "type": Field("type"),
                "score": Field("score"),
            },
        ),
        "courseStartDate": Field("data.started_at"),
        "courseCompletionDate": Field("data.completed_at"),
        "courseCompletionDurationInSeconds": Field("data.duration_seconds"),
        "completionLanguage": Field("data.language"),
    },
}

_PAYLOADS: dict[str, dict[str, Spec]] = {
    "course.created": COURSE_EVENT,
    "course.deleted": COURSE_EVENT,
    "course.published": COURSE_EVENT,
    "course.unpublished": COURSE_EVENT,
    "course.updated": {"type": Field("data.subtype"), **COURSE_EVENT},
    "user.activated": {**LEARNER_COURSES, "courses": Each("data.courses", COURSE_ID)},
    "course_enrollment.created": LEARNER_COURSES,
    "activity.started": ACTIVITY,
    "activity.finished": ACTIVITY,
    "course.completed": COURSE_COMPLETED,
}

EVENTS: dict[str, Any] = {
    key: {
        "type": Const(vendor_type_name(key, EDUME)),
        "payload": payload,
        "timestamp": Field("event.occurred_at"),
    }
    for key, payload in _PAYLOADS.items()
}

PROFILE = Profile(
    key="edume",
    label="eduMe",
    vendor=EDUME,
    content_types=("json",),
    dates=UTC_MS,
    events=EVENTS,
    body_doc=(
        "`{type, payload, timestamp}` with eduMe's event names, the sub-type in `payload.type`, "
        "eduMe's field names and `payload.version` 1"
    ),
    dates_doc="UTC with milliseconds, `2022-07-13T12:03:54.530Z`",
    headers_doc="none of its own (eduMe documents none)",
    signature_doc="none (eduMe documents none); the Standard Webhooks headers are added",
)
