"""A learner's way through the teaching: enrollments, activity, completions (BrainCert, eduMe)."""

from __future__ import annotations

from typing import Any

from ._fields import (
    ACCOUNT_CONTEXT,
    BOOLEAN,
    DATETIME,
    INTEGER,
    NUMBER,
    OPTIONAL_DATETIME,
    PERSON,
    STRING,
    TEXT,
    USER,
    array,
    data_schema,
    described,
    entry,
    enum,
    obj,
    ref,
)
from .courses import COURSE, TEST
from .live import LIVE_CLASS

IDENTIFIER = described(
    obj(
        "key",
        "value",
        id={"type": ["string", "integer"], "description": "The identifier record's own id."},
        key=STRING,
        value=STRING,
        created_at=DATETIME,
    ),
    "An identifier the learner has in another system.",
)

LEARNER = ref(
    "learner",
    uuid={"type": "string", "description": "The learner's global id (eduMe eId)."},
    name={"type": "string", "description": "The full name, when the platform keeps one."},
    identifiers=array(IDENTIFIER),
    **PERSON,
)

ENROLLMENT = ref(
    "enrollment",
    activated_at=DATETIME,
    started_at=DATETIME,
    enrolled_at=DATETIME,
    status={"type": "string", "description": "For example active."},
)

ACTIVITY_STARTED_SUBTYPES = ("course", "lesson", "assessment")
ACTIVITY_FINISHED_SUBTYPES = ("course", "lesson", "assessment", "survey")

SURVEY = ref(
    "survey",
    type=enum("enpsScore", "freeText", "multipleChoice"),
    status=enum("completed", "dismissed"),
)


def _when_subtype(subtype: str, *required: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"subtype": {"const": subtype}}, "required": ["subtype"]},
        "then": {"required": list(required)},
    }


def _activity_schema(subtypes: tuple[str, ...]) -> dict[str, Any]:
    schema = data_schema(
        "subtype",
        "user",
        subtype=enum(*subtypes, doc="What kind of activity."),
        user=LEARNER,
        group=ref("group"),
        course=ref("course"),
        module=ref("module"),
        lesson=ref("lesson"),
        assessment=ref("assessment"),
        survey=SURVEY,
    )
    rules = [
        _when_subtype("course", "course"),
        _when_subtype("lesson", "course", "module", "lesson"),
        _when_subtype("assessment", "course", "module", "assessment"),
    ]
    if "survey" in subtypes:
        # A standalone survey has no course or module; one inside a course has both.
        rules.append(_when_subtype("survey", "survey"))
    schema["allOf"] = rules
    return schema


def _enrollment_schema(item: str, item_schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return data_schema(
        item,
        "user",
        enrollment=ENROLLMENT,
        user=LEARNER,
        group=ref("group"),
        **{item: item_schema},
        **extra,
        **ACCOUNT_CONTEXT,
    )


COMPLETION_SCORES = described(
    obj(
        overall_assessment_score=NUMBER,
        overall_lesson_score=NUMBER,
        breakdown=array(
            ref("activity", activity_key=STRING, type=STRING, score=NUMBER),
            "One entry per lesson or assessment; score is absent when the activity has no quiz.",
        ),
    ),
    "The learner's scores (eduMe).",
)

TEST_RESULT = described(
    obj(
        "final_score",
        final_score=NUMBER,
        passing_score=NUMBER,
        total_questions=INTEGER,
        correct_count=INTEGER,
        incorrect_count=INTEGER,
        manual_scoring={
            "type": ["string", "null"],
            "enum": ["pending", "completed", None],
            "description": "The state of manual scoring, when open-ended answers need it.",
        },
    ),
    "How the learner did.",
)

EVENT_TYPES = [
    entry(
        "course_enrollment.created",
        group="Enrollments",
        description=(
            "A learner was enrolled in (added to) a course. When the platform adds a learner to "
            "several courses at once, `courses` lists them all (eduMe sends one event for all) "
            "and `course` is the first."
        ),
        sample={
            "enrollment": {
                "id": 97472,
                "activated_at": "2024-01-26T22:16:52.255Z",
                "started_at": "2024-01-26T22:17:01.891Z",
            },
            "course": {"id": 101, "name": "Advanced Web Development"},
            "courses": [{"id": 101}, {"id": 2045}],
            "group": {"id": 5},
            "user": {
                "id": 123457,
                "uuid": "62b35f8b-b2c0-45a5-8310-5ed1d0948e30",
                "first_name": "Jane",
                "last_name": "Doe",
                "email": "jane.doe@example.org",
                "identifiers": [],
            },
        },
        schema=_enrollment_schema(
            "course",
            COURSE,
            courses=array(
                ref("course", name=STRING), "Every course the learner was added to at once."
            ),
        ),
    ),
    entry(
        "test_enrollment.created",
        group="Enrollments",
        description="A learner was enrolled in a test.",
        sample={
            "enrollment": {
                "id": 97473,
                "activated_at": "2024-01-27T22:16:52.255Z",
                "started_at": "2024-01-27T22:17:01.891Z",
            },
            "test": {"id": 202, "name": "Webhooks Certification Exam"},
            "user": {
                "id": 123458,
                "first_name": "John",
                "last_name": "Public",
                "email": "john.public@example.org",
            },
        },
        schema=_enrollment_schema("test", TEST),
    ),
    entry(
        "live_class_enrollment.created",
        group="Enrollments",
        description="A learner was enrolled in a live class.",
        sample={
            "enrollment": {
                "id": 97676,
                "enrolled_at": "2024-03-03T17:20:03.401Z",
                "status": "active",
            },
            "live_class": {
                "id": 202223,
                "name": "Advanced Yoga Techniques",
                "datacenter": "New York",
                "class_type": "one-time",
                "scheduled_date": "2024-04-01",
                "scheduled_time": "08:00:00",
            },
            "user": {
                "id": 123461,
                "first_name": "Morgan",
                "last_name": "Practitioner",
                "email": "morgan.practitioner@example.org",
            },
        },
        schema=_enrollment_schema("live_class", LIVE_CLASS),
    ),
    entry(
        "activity.started",
        group="Learning progress",
        description=(
            "A learner started an activity; `subtype` says which: a `course`, a `lesson` or an "
            "`assessment` (eduMe's sub-types), with the module it is in."
        ),
        sample={
            "subtype": "lesson",
            "user": {
                "id": 10215,
                "uuid": "3497b389-7076-43ef-b53b-13bec756cae5",
                "identifiers": [],
            },
            "group": {"id": 5},
            "course": {"id": 9961},
            "module": {"id": 10658},
            "lesson": {"id": 28856},
        },
        schema=_activity_schema(ACTIVITY_STARTED_SUBTYPES),
    ),
    entry(
        "activity.finished",
        group="Learning progress",
        description=(
            "A learner finished an activity; `subtype` says which: a `course`, a `lesson`, an "
            "`assessment` or a `survey` (completed or dismissed). A survey inside a course comes "
            "with its `course` and `module`; a standalone survey has neither. For a course's "
            "detailed results, subscribe to `course.completed`."
        ),
        sample={
            "subtype": "survey",
            "user": {
                "id": 10215,
                "uuid": "3497b389-7076-43ef-b53b-13bec756cae5",
                "identifiers": [],
            },
            "group": {"id": 5},
            "course": {"id": 9961},
            "module": {"id": 10658},
            "survey": {"id": 2159, "type": "multipleChoice", "status": "completed"},
        },
        schema=_activity_schema(ACTIVITY_FINISHED_SUBTYPES),
    ),
    entry(
        "course.completed",
        group="Learning progress",
        description=(
            "A learner completed a course, with the completion details the platform has "
            "(certificate, scores, duration)."
        ),
        sample={
            "course": {
                "id": 12345,
                "name": "Example Course Title",
                "key": "example_course4798",
                "created_at": "2021-05-18T10:15:39.614Z",
                "image_url": None,
            },
            "user": {
                "id": 67890,
                "first_name": "John",
                "last_name": "Doe",
                "email": "john.doe@example.org",
                "identifiers": [
                    {
                        "key": "bamboo.employeeId",
                        "value": "111",
                        "created_at": "2022-02-24T13:19:20.890Z",
                    }
                ],
            },
            "group": {"id": 8884, "name": "Neverland Group"},
            "started_at": "2024-02-14T11:15:00Z",
            "completed_at": "2024-02-14T12:00:00Z",
            "duration_seconds": 2700,
            "language": "en",
            "certificate": {"issued": True, "expires_at": "2025-02-14T12:00:00Z"},
            "scores": {
                "overall_assessment_score": 66.67,
                "overall_lesson_score": 50,
                "breakdown": [
                    {"id": 39726, "activity_key": "activity_1_lesson", "type": "lesson"},
                    {
                        "id": 39727,
                        "activity_key": "activity_2_assessment",
                        "type": "assessment",
                        "score": 66.67,
                    },
                ],
            },
        },
        schema=data_schema(
            "course",
            "user",
            course=COURSE,
            user=LEARNER,
            group=ref("group", name=STRING),
            started_at=DATETIME,
            completed_at=DATETIME,
            duration_seconds=NUMBER,
            language=TEXT,
            certificate=obj(issued=BOOLEAN, expires_at=OPTIONAL_DATETIME),
            scores=COMPLETION_SCORES,
            **ACCOUNT_CONTEXT,
        ),
    ),
    entry(
        "test.completed",
        group="Learning progress",
        description="A learner completed a test; `result` has the score.",
        sample={
            "test": {
                "id": 909850,
                "name": "Advanced Webhooks Test",
                "scoring_type": "adaptive",
                "time_limit": "30 minutes",
                "open_ended": False,
            },
            "user": {
                "id": 124567,
                "first_name": "Sam",
                "last_name": "Davis",
                "email": "sam.davis@example.org",
            },
            "result": {
                "final_score": 85,
                "passing_score": 75,
                "total_questions": 20,
                "correct_count": 17,
                "incorrect_count": 3,
                "manual_scoring": "completed",
            },
            "completed_at": "2024-02-14T21:02:50.000Z",
        },
        schema=data_schema(
            "test",
            "user",
            "result",
            test=TEST,
            user=USER,
            result=TEST_RESULT,
            completed_at=DATETIME,
            **ACCOUNT_CONTEXT,
        ),
    ),
]
