"""People and groups: platform users (BrainCert, eduMe), students and teachers (Edusign)."""

from __future__ import annotations

from typing import Any

from ._fields import (
    ACCOUNT_CONTEXT,
    DATETIME,
    EXTERNAL_ID,
    PERSON,
    STRING,
    TEXT,
    array,
    data_schema,
    described,
    entry,
    obj,
    ref,
)
from .courses import COURSE
from .learning import LEARNER

NAMED = obj("id", id={"type": ["string", "integer"]}, name=STRING)

ACCOUNT = ref(
    "user",
    **PERSON,
    name={"type": "string", "description": "The full name, when the platform keeps one."},
    uuid={"type": "string", "description": "The user's global id (eduMe eId)."},
    created_at=DATETIME,
    avatar_url={"type": ["string", "null"]},
    custom_registration_fields=array(
        obj("id", id=STRING, name=STRING, value=TEXT),
        "Answers to the school's own sign-up questions.",
    ),
    groups=array(NAMED),
    roles=array(NAMED),
    identifiers=LEARNER["properties"]["identifiers"],
)

_USER_SAMPLE = {
    "user": {
        "id": 2017237,
        "first_name": "John",
        "last_name": "Doe",
        "email": "john.doe@example.org",
        "roles": [{"id": "3", "name": "Instructor"}],
        "custom_registration_fields": [
            {"id": "location", "name": "Location", "value": "New York"},
            {"id": "department", "name": "Department", "value": "Engineering"},
        ],
        "groups": [
            {"id": "201", "name": "Software Engineering Masters"},
            {"id": "202", "name": "Project Management"},
        ],
    }
}

GROUP = ref("group", name=STRING, description=TEXT)

ATTENDEE: dict[str, Any] = {**PERSON, "external_id": EXTERNAL_ID}
STUDENT = ref("student", **ATTENDEE)
TEACHER = ref("teacher", **ATTENDEE)

SIGNATURE = described(
    obj(
        "signed_at",
        state={"type": "boolean", "description": "The signature's state (true: signed)."},
        signed_at=DATETIME,
    ),
    "The signature on the course's attendance sheet.",
)

_COURSE_SESSION = {
    "id": "course-4711",
    "name": "Mathematics 101",
    "start": "2026-03-26T09:00:00+02:00",
    "end": "2026-03-26T12:00:00+02:00",
    "external_id": "SIS-MATH-101",
}

_STUDENT_SAMPLE = {
    "student": {
        "id": "student-42",
        "first_name": "Jean",
        "last_name": "Dupont",
        "email": "jean.dupont@example.org",
        "external_id": "SIS-20417",
    }
}

_TEACHER_SAMPLE = {
    "teacher": {
        "id": "teacher-7",
        "first_name": "Marie",
        "last_name": "Martin",
        "email": "marie.martin@example.org",
        "external_id": "SIS-T-0031",
    }
}


def _lifecycle(resource: str, group: str, schema: dict[str, Any], sample: dict[str, Any]) -> list:
    """``created``, ``updated``, ``deleted`` and ``restored`` of an Edusign resource."""
    verbs = {
        "created": f"A {resource} was created.",
        "updated": f"A {resource}'s details were edited.",
        "deleted": f"A {resource} was deleted (it can be restored).",
        "restored": f"A deleted {resource} was restored.",
    }
    return [
        entry(
            f"{resource}.{verb}",
            group=group,
            description=description,
            sample=sample,
            schema=data_schema(resource, **{resource: schema}),
        )
        for verb, description in verbs.items()
    ]


def _signed(resource: str, schema: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
    return entry(
        f"{resource}.signed",
        group=f"{resource.capitalize()}s",
        description=f"A {resource} signed a course's attendance sheet.",
        sample={
            **person,
            "course": _COURSE_SESSION,
            "signature": {
                "state": True,
                "signed_at": (
                    "2026-03-26T09:15:00+02:00"
                    if resource == "student"
                    else "2026-03-26T09:05:00+02:00"
                ),
            },
        },
        schema=data_schema(
            resource,
            "course",
            "signature",
            **{resource: schema},
            course=COURSE,
            signature=SIGNATURE,
        ),
    )


EVENT_TYPES = [
    entry(
        "user.created",
        group="Users",
        description="A user account was created (a sign-up), with its roles and groups.",
        sample={
            "user": {
                "id": 789012,
                "name": "John Doe",
                "email": "john.doe@example.org",
                "created_at": "2024-02-14T10:30:00.000Z",
                "avatar_url": None,
                "custom_registration_fields": [
                    {"id": "school", "name": "School", "value": "University of BrainCert"},
                    {"id": "major", "name": "Major", "value": "Computer Science"},
                ],
                "groups": [
                    {"id": "101", "name": "Web Development Enthusiasts"},
                    {"id": "102", "name": "Advanced Mathematics"},
                ],
                "roles": [
                    {"id": "1", "name": "Student"},
                    {"id": "2", "name": "Course Contributor"},
                ],
            }
        },
        schema=data_schema("user", user=ACCOUNT, **ACCOUNT_CONTEXT),
    ),
    entry(
        "user.updated",
        group="Users",
        description="A user's profile was edited.",
        sample=_USER_SAMPLE,
        schema=data_schema("user", user=ACCOUNT, **ACCOUNT_CONTEXT),
    ),
    entry(
        "user.deleted",
        group="Users",
        description="A user account was deleted; `user` is the account as it was.",
        sample=_USER_SAMPLE,
        schema=data_schema("user", user=ACCOUNT, **ACCOUNT_CONTEXT),
    ),
    entry(
        "user.activated",
        group="Users",
        description=(
            "A learner added to courses activated their account; `courses` are the courses "
            "they were added to."
        ),
        sample={
            "user": {
                "id": 10217,
                "uuid": "62b35f8b-b2c0-45a5-8310-5ed1d0948e30",
                "identifiers": [],
            },
            "group": {"id": 5},
            "courses": [{"id": 202}, {"id": 2045}, {"id": 2099}],
        },
        schema=data_schema(
            "user",
            user=ACCOUNT,
            group=ref("group"),
            courses=array(ref("course")),
        ),
    ),
    entry(
        "group.created",
        group="Groups",
        description="A group of learners was created.",
        sample={
            "group": {
                "id": 304050,
                "name": "Webhooks Enthusiasts",
                "description": (
                    "A group for individuals passionate about learning and sharing knowledge on "
                    "webhooks and their applications in modern web development."
                ),
            }
        },
        schema=data_schema("group", group=GROUP, **ACCOUNT_CONTEXT),
    ),
    *[
        entry(
            f"group.{verb}",
            group="Groups",
            description=description,
            sample={"group": {"id": "group-12"}},
            schema=data_schema("group", group=GROUP),
        )
        for verb, description in {
            "updated": "A group was edited.",
            "deleted": "A group was deleted (it can be restored).",
            "restored": "A deleted group was restored.",
        }.items()
    ],
    *_lifecycle("student", "Students", STUDENT, _STUDENT_SAMPLE),
    _signed("student", STUDENT, _STUDENT_SAMPLE),
    *_lifecycle("teacher", "Teachers", TEACHER, _TEACHER_SAMPLE),
    _signed("teacher", TEACHER, _TEACHER_SAMPLE),
]
