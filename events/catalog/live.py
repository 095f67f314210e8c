"""Live teaching: BrainCert live classes, edudip webinars and Edusign's Zoom meetings."""

from __future__ import annotations

from ._fields import (
    ACCOUNT_CONTEXT,
    DATE,
    DATETIME,
    ID,
    INSTRUCTOR,
    INTEGER,
    STRING,
    TEXT,
    URL,
    array,
    data_schema,
    entry,
    enum,
    obj,
    ref,
)

LIVE_CLASS = ref(
    "live class",
    name=STRING,
    slug=STRING,
    description=TEXT,
    datacenter={"type": "string", "description": "Where the class is hosted."},
    class_type=enum("one-time", "recurring"),
    attendee_limit=INTEGER,
    scheduled_date=DATE,
    scheduled_time={"type": "string", "description": "Local wall-clock time, HH:MM:SS."},
    instructors=array(INSTRUCTOR),
)

_LIVE_CLASS_SAMPLE = {
    "live_class": {
        "id": 202223,
        "name": "Interactive Webhooks Workshop",
        "slug": "interactive-webhooks-workshop",
        "description": (
            "Join us for a live, interactive workshop on webhooks, where you'll learn the basics "
            "and advanced techniques through real-world applications."
        ),
        "datacenter": "New York",
        "class_type": "one-time",
        "attendee_limit": 100,
        "scheduled_date": "2024-03-01",
        "scheduled_time": "15:00:00",
        "instructors": [
            {"id": 891011, "first_name": "Jordan", "last_name": "Casey"},
            {"id": 891012, "first_name": "Alex", "last_name": "Taylor"},
        ],
    }
}

WEBINAR = ref(
    "webinar",
    title=STRING,
    starts_at=DATETIME,
    duration_minutes=INTEGER,
    language=STRING,
    url=URL,
)

_WEBINAR_SAMPLE = {
    "webinar": {
        "id": 48213,
        "title": "Webhooks for school platforms",
        "starts_at": "2024-11-20T17:00:00+01:00",
        "duration_minutes": 60,
        "language": "de",
        "url": "https://webinars.example.org/w/48213",
    }
}

EVENT_TYPES = [
    entry(
        "live_class.created",
        group="Live classes",
        description="A live class (a virtual classroom session) was created.",
        sample=_LIVE_CLASS_SAMPLE,
        schema=data_schema("live_class", live_class=LIVE_CLASS, **ACCOUNT_CONTEXT),
    ),
    entry(
        "live_class.updated",
        group="Live classes",
        description="A live class was edited.",
        sample=_LIVE_CLASS_SAMPLE,
        schema=data_schema("live_class", live_class=LIVE_CLASS, **ACCOUNT_CONTEXT),
    ),
    entry(
        "live_class.deleted",
        group="Live classes",
        description="A live class was deleted.",
        sample=_LIVE_CLASS_SAMPLE,
        schema=data_schema("live_class", live_class=LIVE_CLASS, **ACCOUNT_CONTEXT),
    ),
    entry(
        "webinar.created",
        group="Webinars",
        description="A webinar was created.",
        sample=_WEBINAR_SAMPLE,
        schema=data_schema("webinar", webinar=WEBINAR),
    ),
    entry(
        "webinar.updated",
        group="Webinars",
        description="A webinar was edited (title, time, settings).",
        sample=_WEBINAR_SAMPLE,
        schema=data_schema("webinar", webinar=WEBINAR),
    ),
    entry(
        "webinar.deleted",
        group="Webinars",
        description="A webinar was deleted.",
        sample={"webinar": {"id": 48213, "title": "Webhooks for school platforms"}},
        schema=data_schema("webinar", webinar=WEBINAR),
    ),
    entry(
        "zoom_meeting.created",
        group="Zoom",
        description=(
            "A Zoom meeting was created for a course. `zoom_meeting` carries what Zoom returned; "
            "it always has `id`, `url`, `start` and `end`."
        ),
        sample={
            "course": {"id": "course-4711"},
            "zoom_meeting": {
                "id": "85012345678",
                "url": "https://zoom.us/j/123456",
                "start": "2026-03-26T09:00:00+02:00",
                "end": "2026-03-26T12:00:00+02:00",
            },
        },
        schema=data_schema(
            "course",
            "zoom_meeting",
            course=ref("course"),
            zoom_meeting=obj("id", "url", id=ID, url=URL, start=DATETIME, end=DATETIME),
        ),
    ),
]
