"""Which catalog key each event of the four seed platforms became.

One row per event name a vendor documents (and per sub-type, for eduMe): a receiver written for
that vendor finds its event here, and the catalog test checks that every row names exactly one
existing key. ``docs/events.md`` shows this table.
"""

from __future__ import annotations

from typing import NamedTuple


class SeedEventName(NamedTuple):
    vendor: str
    event: str  # the vendor's name for it, verbatim
    subtype: str  # the vendor's sub-type label, verbatim, or ""
    key: str  # our event type
    data_subtype: str = ""  # the value of data.subtype that carries the vendor's sub-type
    note: str = ""
    sent_as: str = ""  # the vendor's type on the wire, where it differs from the event's name


EDUSIGN = "Edusign"
BRAINCERT = "BrainCert"
EDUME = "eduMe"
EDUDIP = "edudip"


def _edusign(event: str, key: str, note: str = "") -> SeedEventName:
    return SeedEventName(EDUSIGN, event, "", key, note=note)


def _braincert(event: str, key: str, note: str = "") -> SeedEventName:
    return SeedEventName(BRAINCERT, event, "", key, note=note)


SEED_EVENT_NAMES: list[SeedEventName] = [
    _edusign("cron_midnight", "cron.midnight", "00:07 UTC by default, or the school's time"),
    _edusign("on_course_created", "course.created"),
    _edusign("on_course_start", "course.started", "a scheduled event, sent on time"),
    _edusign("on_course_edited", "course.updated"),
    _edusign("on_course_end", "course.ended", "a scheduled event, sent on time"),
    _edusign("on_course_deleted", "course.deleted"),
    _edusign("on_course_locked", "course.locked"),
    _edusign("on_abscence_report_generated", "absence_report.generated"),
    _edusign("on_justified_absence", "absence.justified"),
    _edusign("on_request_justified_absence", "absence_request.created"),
    _edusign("on_zoom_meeting_created", "zoom_meeting.created"),
    _edusign("on_student_sign", "student.signed"),
    _edusign("on_student_created", "student.created"),
    _edusign("on_student_edited", "student.updated"),
    _edusign("on_student_deleted", "student.deleted"),
    _edusign("on_student_unremoved", "student.restored"),
    _edusign("on_teacher_sign", "teacher.signed"),
    _edusign("on_teacher_created", "teacher.created"),
    _edusign("on_teacher_edited", "teacher.updated"),
    _edusign("on_teacher_deleted", "teacher.deleted"),
    _edusign("on_teacher_unremoved", "teacher.restored"),
    _edusign("on_group_created", "group.created"),
    _edusign("on_group_edited", "group.updated"),
    _edusign("on_group_deleted", "group.deleted"),
    _edusign("on_group_unremoved", "group.restored"),
    _edusign("on_document_completed", "document.completed"),
    _edusign("on_document_participant_signed", "document.signed"),
    _edusign("on_survey_answer", "survey.answered"),
    _edusign("on_email_invalid", "email.invalidated"),
    _edusign("on_app_parameters_changed", "app_parameters.updated"),
    _braincert("User Created", "user.created"),
    _braincert("Group Created", "group.created"),
    _braincert("Course Created", "course.created"),
    _braincert("Course Bundle Created", "bundle.created"),
    _braincert("Test Created", "test.created"),
    _braincert("Live Class Created", "live_class.created"),
    _braincert("User Updated", "user.updated"),
    _braincert("Course Updated", "course.updated"),
    _braincert("Course Bundle Updated", "bundle.updated"),
    _braincert("Test Updated", "test.updated"),
    _braincert("Live Class Updated", "live_class.updated"),
    _braincert("Product Created", "product.created"),
    _braincert("User Deleted", "user.deleted"),
    _braincert("Course Deleted", "course.deleted"),
    _braincert("Course Bundle Deleted", "bundle.deleted"),
    _braincert("Test Deleted", "test.deleted"),
    _braincert("Live Class Deleted", "live_class.deleted"),
    _braincert("Product Deleted", "product.deleted"),
    _braincert("Course Enrollment", "course_enrollment.created"),
    _braincert("Test Enrollment", "test_enrollment.created"),
    _braincert("Live Class Enrollment", "live_class_enrollment.created"),
    _braincert("Course Completed", "course.completed"),
    _braincert("Test Completed", "test.completed"),
    _braincert("New Sale", "sale.completed"),
    SeedEventName(EDUME, "course.added", "", "course.created"),
    SeedEventName(EDUME, "course.deleted", "", "course.deleted"),
    SeedEventName(EDUME, "course.published", "", "course.published"),
    SeedEventName(EDUME, "course.unpublished", "", "course.unpublished"),
    SeedEventName(EDUME, "course.updated", "title.changed", "course.updated", "title.changed"),
    SeedEventName(EDUME, "course.updated", "team.assigned", "course.updated", "team.assigned"),
    SeedEventName(EDUME, "course.updated", "team.removed", "course.updated", "team.removed"),
    SeedEventName(EDUME, "learner.activated", "", "user.activated"),
    SeedEventName(
        EDUME,
        "learner.added",
        "",
        "course_enrollment.created",
        note="one event for all the courses the learner was added to (`courses`)",
    ),
    SeedEventName(EDUME, "learner.activity.started", "Course", "activity.started", "course"),
    SeedEventName(
        EDUME, "learner.activity.started", "Lesson activity", "activity.started", "lesson"
    ),
    SeedEventName(
        EDUME, "learner.activity.started", "Assessment activity", "activity.started", "assessment"
    ),
    SeedEventName(EDUME, "learner.activity.finished", "Course", "activity.finished", "course"),
    SeedEventName(
        EDUME, "learner.activity.finished", "Lesson activity", "activity.finished", "lesson"
    ),
    SeedEventName(
        EDUME,
        "learner.activity.finished",
        "Assessment activity",
        "activity.finished",
        "assessment",
    ),
    SeedEventName(
        EDUME,
        "learner.activity.finished",
        "In-course survey",
        "activity.finished",
        "survey",
        "with course and module",
    ),
    SeedEventName(
        EDUME,
        "learner.activity.finished",
        "Standalone survey",
        "activity.finished",
        "survey",
        "without course or module",
    ),
    SeedEventName(
        EDUME,
        "learner.course.completed",
        "",
        "course.completed",
        note="sent with the type `course.completed`, as eduMe's sample shows",
        sent_as="course.completed",
    ),
    SeedEventName(EDUDIP, "webinar.created", "", "webinar.created"),
    SeedEventName(EDUDIP, "webinar.updated", "", "webinar.updated"),
    SeedEventName(EDUDIP, "webinar.deleted", "", "webinar.deleted"),
]


def _vendor_type_names() -> dict[str, dict[str, str]]:
    """Each seed vendor's own type for our event types, as sent on the wire (the first name in
    the table when a vendor has several for one type)."""
    names: dict[str, dict[str, str]] = {}
    for row in SEED_EVENT_NAMES:
        names.setdefault(row.vendor.lower(), {}).setdefault(row.key, row.sent_as or row.event)
    return names


VENDOR_TYPE_NAMES = _vendor_type_names()


def vendor_type_name(event_type: str, vendor: str) -> str:
    """The vendor's own type for one of our event types (as the vendor sends it), or our type
    itself when the vendor has no such event: a name the vendor never had is never made up."""
    return VENDOR_TYPE_NAMES.get(vendor.lower(), {}).get(event_type, event_type)
