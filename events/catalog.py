"""The event-type catalog shipped with the product.

Loaded into the EventType table by a data migration and by ``event_types_sync()``, so a fresh
install has it and an upgrade updates it. Each entry's sample payload validates against its schema.
"""

from __future__ import annotations

from typing import Any

_COURSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["course"],
    "properties": {
        "course": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "start": {"type": "string", "format": "date-time"},
                "end": {"type": "string", "format": "date-time"},
            },
        }
    },
}

_COURSE_SAMPLE: dict[str, Any] = {
    "course": {
        "id": "course-4711",
        "name": "Mathematics 101",
        "start": "2026-03-26T07:00:00+00:00",
        "end": "2026-03-26T10:00:00+00:00",
    }
}

_STUDENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["student"],
    "properties": {
        "student": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string"},
                "first_name": {"type": "string"},
                "last_name": {"type": "string"},
                "email": {"type": "string"},
            },
        },
        "course": _COURSE_SCHEMA["properties"]["course"],
    },
}

_STUDENT_SAMPLE: dict[str, Any] = {
    "student": {
        "id": "student-42",
        "first_name": "Jean",
        "last_name": "Dupont",
        "email": "jean.dupont@example.org",
    }
}


def _entry(
    key: str, group: str, description: str, sample: dict[str, Any], schema: dict[str, Any]
) -> dict[str, Any]:
    return {
        "key": key,
        "group": group,
        "description": description,
        "sample_payload": sample,
        "json_schema": schema,
        "version": 1,
        "deprecated": False,
    }


EVENT_TYPES: list[dict[str, Any]] = [
    _entry("course.created", "Courses", "A course was created.", _COURSE_SAMPLE, _COURSE_SCHEMA),
    _entry("course.updated", "Courses", "A course was edited.", _COURSE_SAMPLE, _COURSE_SCHEMA),
    _entry("course.deleted", "Courses", "A course was deleted.", _COURSE_SAMPLE, _COURSE_SCHEMA),
    _entry(
        "student.created", "Students", "A student was created.", _STUDENT_SAMPLE, _STUDENT_SCHEMA
    ),
    _entry(
        "student.signed",
        "Students",
        "A student signed an attendance sheet.",
        {**_STUDENT_SAMPLE, **_COURSE_SAMPLE},
        _STUDENT_SCHEMA,
    ),
]
