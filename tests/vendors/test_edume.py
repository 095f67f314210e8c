"""Golden tests: every eduMe sample payload (18 events and sub-types), from our catalog's data
through the eduMe profile."""

import pytest

from tests.schools.factories import SchoolFactory
from tests.vendors.golden import shape_differences, vendor_body, vendor_samples

pytestmark = pytest.mark.django_db

EDUME = vendor_samples("edume")
SAMPLES = {(event["name"], event["subtype"]): event for event in EDUME["events"]}

COURSE_EVENT = {
    "group": {"id": 12779},
    "teams": [{"id": 55526}],
    "course": {"id": 22299, "key": "tips_for_good_mental_health7506"},
    "modules": [{"id": 24775}],
}


def _learner(user_id: int, uuid: str) -> dict:
    return {"id": user_id, "uuid": uuid, "identifiers": []}


ADA = _learner(10217, "62b35f8b-b2c0-45a5-8310-5ed1d0948e30")
BOB = _learner(10218, "baa4e1be-55c3-4505-84e5-2e0d5154337b")
CLEO = _learner(10215, "3497b389-7076-43ef-b53b-13bec756cae5")


def _activity(subtype: str, user: dict, **parts: int) -> dict:
    data = {"subtype": subtype, "user": user, "group": {"id": 5}, "course": {"id": 9961}}
    data.update({name: {"id": value} for name, value in parts.items()})
    return data


# The learner, course and group of learner.course.completed as the platform has them: the
# catalog's fields plus the platform's own, which the profile passes on in camelCase.
COMPLETION = {
    "user": {
        "id": 5398399,
        "email": "hook.captain@test.com",
        "first_name": "Hook",
        "last_name": "Captain",
        "name": "Hook Captain",
        "identifiers": [
            {
                "key": "fountain.applicantId",
                "value": "18d0f780-95b4-4ab1-a12b-ef7d8815338d",
                "created_at": "2022-02-24T13:11:48.642Z",
            },
            {
                "key": "fountain.email",
                "value": "hook.captain@test.com",
                "created_at": "2022-02-24T13:11:48.642Z",
            },
            {"key": "bamboo.employeeId", "value": "111", "created_at": "2022-02-24T13:19:20.890Z"},
        ],
        "is_anonymous": False,
        "is_admin": False,
        "created_at": "2021-05-18T10:34:32.907Z",
        "updated_at": "2021-05-18T10:38:15.122Z",
        "phone": None,
        "invite_code": None,
        "employee_id": "IDOptionallyProvidedByClient123",
        "activated": True,
        "locked": False,
        "auth_version": 1,
        "is_company_admin": False,
        "is_editor": False,
        "is_analyst": False,
        "is_manager": False,
        "seen_web_onboarding": True,
        "language": "en",
        "hidden": False,
        "deleted": False,
        "is_super_admin": False,
        "has_signed_in_as_learner": False,
        "has_created_course": False,
        "has_invited_admins": False,
        "is_company_owner": False,
        "send_activation_reminders": True,
        "timezone": None,
        "is_unsubscribed_from_engagement_emails": False,
        "auth_type": "default",
        "activation_date": "2021-05-18T10:34:32.907Z",
        "should_show_gamification_onboarding": False,
        "deposited_points": 0,
    },
    "course": {
        "id": 17167,
        "name": "How to capture Peter Pan",
        "key": "webhook4798",
        "created_at": "2021-05-18T10:15:39.614Z",
        "image_url": None,
        "customer_id": 5,
        "public": False,
        "icon": "cardchart",
        "updated_at": "2021-05-18T10:15:39.614Z",
        "colour": "#DBD56E",
        "published": True,
        "type": "ongoing",
        "requires_enrolment": False,
        "is_sample": False,
        "completion_message": None,
        "completion_button_url": None,
        "completion_button_text": None,
        "is_hidden": False,
        "learners_count": None,
    },
    "group": {
        "id": 8884,
        "name": "Neverland Group",
        "customer_id": 5,
        "created_at": "2021-05-13T13:55:35.533Z",
        "updated_at": "2021-05-13T13:55:35.533Z",
        "parent_group_id": None,
        "welcome_page_config_id": None,
        "self_signup_config_id": None,
        "language": None,
        "deleted": False,
        "sso_config_id": None,
        "cookie_consent_disabled": False,
        "users_count": None,
        "activated_users_count": None,
    },
    "scores": {
        "overall_assessment_score": 66.67,
        "overall_lesson_score": 50,
        "breakdown": [
            {"id": 39726, "activity_key": "activity_1_lesson_no_quiz7706", "type": "lesson"},
            {
                "id": 39727,
                "activity_key": "activity_2_assessment4385",
                "type": "assessment",
                "score": 66.67,
            },
            {
                "id": 39728,
                "activity_key": "activity_3_lesson_with_quiz4829",
                "type": "lesson",
                "score": 50,
            },
        ],
    },
    "started_at": "2021-05-18T10:38:08.165Z",
    "completed_at": "2021-05-18T10:39:02.187Z",
    "duration_seconds": 54,
    "language": "en",
}

# (eduMe event, sub-type label): (our event type, our data)
CASES = {
    ("course.added", ""): ("course.created", COURSE_EVENT),
    ("course.deleted", ""): ("course.deleted", COURSE_EVENT),
    ("course.published", ""): ("course.published", COURSE_EVENT),
    ("course.unpublished", ""): ("course.unpublished", COURSE_EVENT),
    **{
        ("course.updated", subtype): ("course.updated", {"subtype": subtype, **COURSE_EVENT})
        for subtype in ("title.changed", "team.assigned", "team.removed")
    },
    ("learner.activated", ""): (
        "user.activated",
        {"user": ADA, "group": {"id": 5}, "courses": [{"id": 202}, {"id": 2045}, {"id": 2099}]},
    ),
    ("learner.added", ""): (
        "course_enrollment.created",
        {
            "user": ADA,
            "group": {"id": 5},
            "course": {"id": 202},
            "courses": [{"id": 202}, {"id": 2045}, {"id": 2099}],
        },
    ),
    ("learner.activity.started", "Course"): ("activity.started", _activity("course", BOB)),
    ("learner.activity.started", "Lesson activity"): (
        "activity.started",
        _activity("lesson", CLEO, lesson=28856, module=10658),
    ),
    ("learner.activity.started", "Assessment activity"): (
        "activity.started",
        _activity("assessment", ADA, module=10658, assessment=29216),
    ),
    ("learner.activity.finished", "Course"): ("activity.finished", _activity("course", BOB)),
    ("learner.activity.finished", "Lesson activity"): (
        "activity.finished",
        _activity("lesson", CLEO, lesson=28856, module=10658),
    ),
    ("learner.activity.finished", "Assessment activity"): (
        "activity.finished",
        _activity("assessment", ADA, module=10658, assessment=29216),
    ),
    ("learner.activity.finished", "In-course survey"): (
        "activity.finished",
        {
            **_activity("survey", CLEO, module=10658),
            "survey": {"id": 2159, "type": "multipleChoice", "status": "completed"},
        },
    ),
    ("learner.activity.finished", "Standalone survey"): (
        "activity.finished",
        {
            "subtype": "survey",
            "user": _learner(10216, "34dd8aac-9063-48b3-9bf4-d498e86a3204"),
            "group": {"id": 1297},
            "survey": {"id": 2161, "type": "enpsScore", "status": "completed"},
        },
    ),
    ("learner.course.completed", ""): ("course.completed", COMPLETION),
}


def test_every_edume_sample_has_a_case():
    assert sorted(CASES) == sorted(SAMPLES)
    assert len(CASES) == 18


@pytest.mark.parametrize(("name", "subtype"), sorted(CASES))
def test_the_edume_profile_sends_what_edume_sends(name, subtype):
    event_type, data = CASES[(name, subtype)]
    sample = SAMPLES[(name, subtype)]["sample"]

    body, _ = vendor_body(
        SchoolFactory(timezone="America/New_York"),
        profile="edume",
        event_type=event_type,
        data=data,
        occurred_at=sample["timestamp"],
    )

    assert shape_differences(body, sample) == []


def test_learner_added_without_a_courses_list_names_its_one_course():
    data = {"user": ADA, "group": {"id": 5}, "course": {"id": 202}}

    body, _ = vendor_body(
        SchoolFactory(),
        profile="edume",
        event_type="course_enrollment.created",
        data=data,
        occurred_at="2022-07-21T13:29:32.423Z",
    )

    assert body["payload"]["courses"] == [{"courseId": 202}]
