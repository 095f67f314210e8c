"""Courses, course bundles and tests: what a school teaches (Edusign, BrainCert, eduMe)."""

from __future__ import annotations

from typing import Any

from ._fields import (
    ACCOUNT_CONTEXT,
    BOOLEAN,
    DATETIME,
    EXTERNAL_ID,
    INSTRUCTOR,
    STRING,
    TEXT,
    URL,
    array,
    data_schema,
    entry,
    enum,
    ref,
)

COURSE = ref(
    "course",
    name=STRING,
    key={"type": "string", "description": "A stable text key of the course (eduMe courseKey)."},
    slug=STRING,
    subtitle=TEXT,
    description=TEXT,
    image_url={"type": ["string", "null"]},
    payment_type=enum("free", "paid"),
    start=DATETIME,
    end=DATETIME,
    created_at=DATETIME,
    external_id=EXTERNAL_ID,
    instructors=array(INSTRUCTOR),
)

# eduMe sends a course event with the group it belongs to and the teams and modules it has.
COURSE_CONTEXT = {
    "group": ref("group"),
    "teams": array(ref("team"), "The teams the course is assigned to."),
    "modules": array(ref("module"), "The course's modules."),
}

COURSE_UPDATE_SUBTYPES = ("title.changed", "team.assigned", "team.removed")


def _course_schema(**extra: Any) -> dict[str, Any]:
    return data_schema("course", course=COURSE, **COURSE_CONTEXT, **ACCOUNT_CONTEXT, **extra)


_BRAINCERT_COURSE = {
    "id": 909850,
    "name": "Introduction to Webhooks",
    "slug": "introduction-to-webhooks",
    "subtitle": "The Power of Real-Time Integrations",
    "description": (
        "A comprehensive guide to understanding and implementing webhooks. Learn through "
        "hands-on examples and real-world scenarios."
    ),
    "image_url": "/assets/images/intro-to-webhooks.png",
    "payment_type": "free",
    "created_at": "2024-02-14T21:52:13.530Z",
    "instructors": [
        {
            "id": 890789,
            "first_name": "Alex",
            "last_name": "Smith",
            "bio": "Senior Developer and Educator",
        },
        {
            "id": 890790,
            "first_name": "Jamie",
            "last_name": "Doe",
            "bio": "Expert in Webhook Integrations",
        },
    ],
}

# A course event as every vendor profile can send it: BrainCert's course, eduMe's key, group,
# teams and modules.
_COURSE_EVENT_SAMPLE = {
    "course": {**_BRAINCERT_COURSE, "key": "introduction_to_webhooks4711"},
    "group": {"id": 12779},
    "teams": [{"id": 55526}],
    "modules": [{"id": 24775}],
}

_EDUSIGN_COURSE = {
    "id": "course-4711",
    "name": "Mathematics 101",
    "start": "2026-03-26T09:00:00+02:00",
    "end": "2026-03-26T12:00:00+02:00",
    "external_id": "SIS-MATH-101",
}

_EDUME_COURSE_EVENT = {
    "course": {"id": 22299, "key": "tips_for_good_mental_health7506"},
    "group": {"id": 12779},
    "teams": [{"id": 55526}],
    "modules": [{"id": 24775}],
}

BUNDLE = ref(
    "course bundle",
    name=STRING,
    slug=STRING,
    description=TEXT,
    image_url={"type": ["string", "null"]},
    payment_type=enum("free", "paid"),
    created_at=DATETIME,
    courses=array(ref("course", name=STRING, instructors=array(INSTRUCTOR))),
)

_BUNDLE_SAMPLE = {
    "bundle": {
        "id": 909850,
        "name": "Webhooks Mastery Bundle",
        "slug": "webhooks-mastery-bundle",
        "description": (
            "This bundle includes a comprehensive set of courses to master webhooks, from basic "
            "concepts to advanced implementations."
        ),
        "image_url": "/assets/images/webhooks-mastery-bundle.png",
        "payment_type": "paid",
        "created_at": "2024-02-14T21:52:13.530Z",
        "courses": [
            {
                "id": 101,
                "name": "Introduction to Webhooks",
                "instructors": [
                    {
                        "id": 890789,
                        "first_name": "Alex",
                        "last_name": "Smith",
                        "bio": "Senior Developer and Educator",
                    }
                ],
            },
            {
                "id": 102,
                "name": "Advanced Webhooks in Practice",
                "instructors": [
                    {
                        "id": 890790,
                        "first_name": "Jamie",
                        "last_name": "Doe",
                        "bio": "Expert in Webhook Integrations",
                    }
                ],
            },
        ],
    }
}

TEST = ref(
    "test",
    name=STRING,
    slug=STRING,
    description=TEXT,
    image_url={"type": ["string", "null"]},
    scoring_type={"type": "string", "description": "adaptive, standard or partial credit."},
    time_limit={"type": ["string", "null"], "description": "As shown to learners."},
    payment_type=enum("free", "paid"),
    open_ended=BOOLEAN,
    created_at=DATETIME,
    instructor=INSTRUCTOR,
)

_TEST_SAMPLE = {
    "test": {
        "id": 909850,
        "name": "Advanced Webhooks Assessment",
        "slug": "advanced-webhooks-assessment",
        "description": (
            "Test your knowledge and application skills on webhooks with this comprehensive "
            "assessment."
        ),
        "image_url": "/assets/images/intro-to-webhooks.png",
        "scoring_type": "adaptive",
        "time_limit": "30 minutes",
        "payment_type": "paid",
        "created_at": "2024-02-14T21:52:13.530Z",
        "instructor": {
            "id": 890789,
            "first_name": "Alex",
            "last_name": "Smith",
            "bio": "Senior Developer and Educator",
        },
    }
}

EVENT_TYPES = [
    entry(
        "course.created",
        group="Courses",
        description="A course was created.",
        sample=_COURSE_EVENT_SAMPLE,
        schema=_course_schema(),
    ),
    entry(
        "course.updated",
        group="Courses",
        description=(
            "A course was edited. When the platform knows what changed, `subtype` says so: "
            "`title.changed`, `team.assigned` or `team.removed` (eduMe's sub-types); the teams "
            "assigned or removed are in `teams`."
        ),
        sample={"subtype": "title.changed", **_EDUME_COURSE_EVENT},
        schema=_course_schema(
            subtype=enum(*COURSE_UPDATE_SUBTYPES, doc="What changed, when known.")
        ),
    ),
    entry(
        "course.deleted",
        group="Courses",
        description="A course was deleted; `course` is the course as it was.",
        sample=_COURSE_EVENT_SAMPLE,
        schema=_course_schema(),
    ),
    entry(
        "course.locked",
        group="Courses",
        description=(
            "A course was locked: its attendance sheet was generated and archived; "
            "`attendance_list_url` is the sheet."
        ),
        sample={
            "course": {"id": "course-4711", "name": "Mathematics 101"},
            "attendance_list_url": "https://files.example.org/attendance/course-4711.pdf",
        },
        schema=_course_schema(attendance_list_url=URL),
    ),
    entry(
        "course.started",
        group="Courses",
        description=(
            "A course session reached its start time. The platform schedules it for the "
            "session's start and it is sent at that time (see scheduled events)."
        ),
        sample={"course": _EDUSIGN_COURSE},
        schema=_course_schema(),
    ),
    entry(
        "course.ended",
        group="Courses",
        description=(
            "A course session reached its end time. The platform schedules it for the "
            "session's end and it is sent at that time (see scheduled events)."
        ),
        sample={"course": _EDUSIGN_COURSE},
        schema=_course_schema(),
    ),
    entry(
        "course.published",
        group="Courses",
        description="A course was published: learners of its teams can now see it.",
        sample=_EDUME_COURSE_EVENT,
        schema=_course_schema(),
    ),
    entry(
        "course.unpublished",
        group="Courses",
        description="A course was unpublished: learners no longer see it.",
        sample=_EDUME_COURSE_EVENT,
        schema=_course_schema(),
    ),
    entry(
        "bundle.created",
        group="Course bundles",
        description="A course bundle (several courses sold together) was created.",
        sample=_BUNDLE_SAMPLE,
        schema=data_schema("bundle", bundle=BUNDLE, **ACCOUNT_CONTEXT),
    ),
    entry(
        "bundle.updated",
        group="Course bundles",
        description="A course bundle was edited.",
        sample=_BUNDLE_SAMPLE,
        schema=data_schema("bundle", bundle=BUNDLE, **ACCOUNT_CONTEXT),
    ),
    entry(
        "bundle.deleted",
        group="Course bundles",
        description="A course bundle was deleted.",
        sample=_BUNDLE_SAMPLE,
        schema=data_schema("bundle", bundle=BUNDLE, **ACCOUNT_CONTEXT),
    ),
    entry(
        "test.created",
        group="Tests",
        description="A test (an assessment learners enrol in and are scored on) was created.",
        sample=_TEST_SAMPLE,
        schema=data_schema("test", test=TEST, **ACCOUNT_CONTEXT),
    ),
    entry(
        "test.updated",
        group="Tests",
        description="A test was edited.",
        sample=_TEST_SAMPLE,
        schema=data_schema("test", test=TEST, **ACCOUNT_CONTEXT),
    ),
    entry(
        "test.deleted",
        group="Tests",
        description="A test was deleted.",
        sample=_TEST_SAMPLE,
        schema=data_schema("test", test=TEST, **ACCOUNT_CONTEXT),
    ),
]
