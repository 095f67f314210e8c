"""Golden tests: all 23 BrainCert samples, from our catalog's data through the BrainCert profile.

Each sample's event is published with data in our catalog's shape carrying the sample's values;
the body a BrainCert webhook gets must have every path, type and value of BrainCert's sample
(``golden.py`` says which values may differ).
"""

import datetime as dt
import json

import pytest
import xmltodict

from tests.schools.factories import SchoolFactory
from tests.vendors.golden import shape_differences, vendor_body, vendor_samples

pytestmark = pytest.mark.django_db

BRAINCERT = vendor_samples("braincert")
SAMPLES = {sample["topic"]: sample for sample in BRAINCERT["samples"]}

# Values that are ours to assign, or that the seed shows as placeholders.
ALWAYS = {
    "id",  # the event's id
    # The seed's Unix timestamps do not match its own created_at (1684392300 is May 2023 while
    # created_at is February 2024); ours is created_at's, checked below.
    "timestamp",
}

INSTRUCTORS = [
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
]
COURSE = {
    "id": 909850,
    "name": "Introduction to Webhooks",
    "slug": "introduction-to-webhooks",
    "subtitle": "The Power of Real-Time Integrations",
    "description": (
        "A comprehensive guide to understanding and implementing webhooks. Learn through hands-on "
        "examples and real-world scenarios."
    ),
    "image_url": "/assets/images/intro-to-webhooks.png",
    "created_at": "2024-02-14T21:52:13.530Z",
    "payment_type": "free",
    "instructors": INSTRUCTORS,
}
BUNDLE = {
    "id": 909850,
    "name": "Webhooks Mastery Bundle",
    "slug": "webhooks-mastery-bundle",
    "description": (
        "This bundle includes a comprehensive set of courses to master webhooks, from basic "
        "concepts to advanced implementations."
    ),
    "image_url": "/assets/images/webhooks-mastery-bundle.png",
    "created_at": "2024-02-14T21:52:13.530Z",
    "payment_type": "paid",
    "courses": [
        {"id": 101, "name": "Introduction to Webhooks", "instructors": INSTRUCTORS[:1]},
        {"id": 102, "name": "Advanced Webhooks in Practice", "instructors": INSTRUCTORS[1:]},
    ],
}
TEST = {
    "id": 909850,
    "name": "Advanced Webhooks Assessment",
    "slug": "advanced-webhooks-assessment",
    "description": (
        "Test your knowledge and application skills on webhooks with this comprehensive assessment."
    ),
    "image_url": "/assets/images/intro-to-webhooks.png",
    "scoring_type": "adaptive",
    "time_limit": "30 minutes",
    "payment_type": "paid",
    "created_at": "2024-02-14T21:52:13.530Z",
    "instructor": INSTRUCTORS[0],
}
LIVE_CLASS = {
    "id": 202223,
    "name": "Interactive Webhooks Workshop",
    "slug": "interactive-webhooks-workshop",
    "description": (
        "Join us for a live, interactive workshop on webhooks, where you'll learn the basics and "
        "advanced techniques through real-world applications."
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
USER = {
    "id": 2017237,
    "first_name": "John",
    "last_name": "Doe",
    "email": "john.doe@example.org",
    "roles": [{"id": 3, "name": "Instructor"}],
    "custom_registration_fields": [
        {"id": "location", "name": "Location", "value": "New York"},
        {"id": "department", "name": "Department", "value": "Engineering"},
    ],
    "groups": [
        {"id": 201, "name": "Software Engineering Masters"},
        {"id": 202, "name": "Project Management"},
    ],
}
PRODUCT = {
    "id": 5521,
    "type": "physical",
    "name": "Course Growing Star",
    "excerpt": "A printed workbook for the course.",
    "url": "https://entelyst.braincert.com/product/course-growing-star",
    "price": 49.0,
    "discount": 0,
    "description": "Exercises and notes for every lesson.",
    "shipping_option": "both",
    "shipping_charge": 4.5,
    "weight_lb": 1.2,
    "banner_url": "https://entelyst.braincert.com/media/course-growing-star.png",
    "sku": "CGS-001",
    "track_stock": True,
    "items_in_stock": 0,
}
# The product sample's values are its form's labels ("Price", "Weight lb", ...).
PRODUCT_PLACEHOLDERS = {
    f"payload.{key}"
    for key in (
        "excerpt",
        "price",
        "discount",
        "description",
        "shipping_charge",
        "weight",
        "banner",
        "sku",
    )
}


def _email(first: str, last: str) -> str:
    return f"{first}.{last}@example.org".lower()


def _enrollment_user(user_id: int, first: str, last: str) -> dict:
    return {"id": user_id, "first_name": first, "last_name": last, "email": _email(first, last)}


# topic: (our event type, our data, the sample's placeholders besides ALWAYS)
CASES = {
    "User Created": (
        "user.created",
        {
            "domain_id": "John Doe",
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
                    {"id": 101, "name": "Web Development Enthusiasts"},
                    {"id": 102, "name": "Advanced Mathematics"},
                ],
                "roles": [{"id": 1, "name": "Student"}, {"id": 2, "name": "Course Contributor"}],
            },
        },
        set(),
    ),
    "Group Created": (
        "group.created",
        {
            "domain_id": "John Doe",
            "group": {
                "id": 304050,
                "name": "Webhooks Enthusiasts",
                "description": (
                    "A group for individuals passionate about learning and sharing knowledge on "
                    "webhooks and their applications in modern web development."
                ),
            },
        },
        set(),
    ),
    "Course Created": ("course.created", {"domain_id": "John Doe", "course": COURSE}, set()),
    "Course Updated": ("course.updated", {"domain_id": "Jason Miller", "course": COURSE}, set()),
    "Course Deleted": ("course.deleted", {"domain_id": "William Smith", "course": COURSE}, set()),
    "Course Bundle Created": ("bundle.created", {"domain_id": "John Doe", "bundle": BUNDLE}, set()),
    "Course Bundle Updated": (
        "bundle.updated",
        {"domain_id": "William Smith", "bundle": BUNDLE},
        set(),
    ),
    "Course Bundle Deleted": ("bundle.deleted", {"domain_id": "John Doe", "bundle": BUNDLE}, set()),
    "Test Created": ("test.created", {"domain_id": "Jason Miller", "test": TEST}, set()),
    "Test Updated": ("test.updated", {"domain_id": "Jason Miller", "test": TEST}, set()),
    "Test Deleted": ("test.deleted", {"domain_id": "Jason Miller", "test": TEST}, set()),
    "Live Class Created": (
        "live_class.created",
        {"domain_id": "Jason Miller", "live_class": LIVE_CLASS},
        set(),
    ),
    "Live Class Deleted": (
        "live_class.deleted",
        {"domain_id": "John Doe", "live_class": LIVE_CLASS},
        set(),
    ),
    "User Updated": (
        "user.updated",
        {"tenant_id": "John Doe", "domain_id": "John Doe", "user": USER},
        set(),
    ),
    "User Deleted": (
        "user.deleted",
        {"tenant_id": "John Doe", "domain_id": "John Doe", "user": USER},
        set(),
    ),
    "Product Created": (
        "product.created",
        {"tenant_id": "William Smith", "product": PRODUCT},
        PRODUCT_PLACEHOLDERS,
    ),
    "Product Deleted": (
        "product.deleted",
        {"tenant_id": "William Smith", "product": PRODUCT},
        PRODUCT_PLACEHOLDERS,
    ),
    "Course Enrollment": (
        "course_enrollment.created",
        {
            "tenant_id": "Jason Miller",
            "enrollment": {
                "id": 97472,
                "activated_at": "2024-01-26T22:16:52.255Z",
                "started_at": "2024-01-26T22:17:01.891Z",
            },
            "course": {"id": 101, "name": "Advanced Web Development"},
            "user": _enrollment_user(123457, "Jane", "Doe"),
        },
        set(),
    ),
    "Test Enrollment": (
        "test_enrollment.created",
        {
            "tenant_id": "William Smith",
            "enrollment": {
                "id": 97473,
                "activated_at": "2024-01-27T22:16:52.255Z",
                "started_at": "2024-01-27T22:17:01.891Z",
            },
            "test": {"id": 202, "name": "Webhooks Certification Exam"},
            "user": _enrollment_user(123458, "John", "Public"),
        },
        set(),
    ),
    "Live Class Enrollment": (
        "live_class_enrollment.created",
        {
            "tenant_id": "William Smith",
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
            "user": _enrollment_user(123461, "Morgan", "Practitioner"),
        },
        set(),
    ),
    "Course Completed": (
        "course.completed",
        {
            "domain_id": "Jason Miller",
            "course": {"id": 12345, "name": "Example Course Title"},
            "user": _enrollment_user(67890, "John", "Doe"),
            "completed_at": "2024-02-14T12:00:00Z",
            "certificate": {"issued": True, "expires_at": "2025-02-14T12:00:00Z"},
        },
        set(),
    ),
    "Test Completed": (
        "test.completed",
        {
            "domain_id": "John Doe",
            "test": {
                "id": 909850,
                "name": "Advanced Webhooks Test",
                "open_ended": False,
                "scoring_type": "adaptive",
                "time_limit": "30 minutes",
            },
            "result": {
                "final_score": 85,
                "passing_score": 75,
                "manual_scoring": "pending",
                "total_questions": 20,
                "correct_count": 17,
                "incorrect_count": 3,
            },
            "user": _enrollment_user(124567, "Sam", "Davis"),
            "completed_at": "2024-02-14T21:02:50.000Z",
        },
        set(),
    ),
    "New Sale": (
        "sale.completed",
        {
            "tenant_id": "3",
            "sale": {
                "id": "ORD_ep3FVWZ9lC",
                "ordered_at": "2023-11-30T16:51:00.000Z",
                "payment_method": "paypal",
                "payment_mode": "card",
                "currency": "USD",
                "total_amount": 180,
                "service_charge": 0,
                "total": 180,
                "payment_status": "paid",
                "items": [
                    {
                        "type": "course",
                        "name": "PHP course",
                        "price": 100,
                        "quantity": 1,
                        "shipping_charge": 0,
                        "total_shipping_amount": 0,
                        "discount": 0,
                        "item_total": 100,
                    },
                    {
                        "type": "test",
                        "name": "Recurring payment test",
                        "price": 80,
                        "quantity": 1,
                        "shipping_charge": 0,
                        "total_shipping_amount": 0,
                        "discount": 0,
                        "item_total": 80,
                    },
                ],
            },
            "user": {
                "email": "yasin@example.org",
                "first_name": "Yasin",
                "customer_since": "2011-05-28T15:41:00.000Z",
            },
        },
        set(),
    ),
}


def test_every_braincert_sample_has_a_case():
    assert sorted(CASES) == sorted(SAMPLES)
    assert len(CASES) == 23


@pytest.mark.parametrize("topic", sorted(CASES))
def test_the_braincert_profile_sends_what_braincert_sends(topic):
    event_type, data, placeholders = CASES[topic]
    sample = SAMPLES[topic]["envelope"]
    school = SchoolFactory(timezone="Europe/Paris")

    body, raw = vendor_body(
        school,
        profile="braincert",
        event_type=event_type,
        data=data,
        occurred_at=sample["created_at"],
    )

    assert shape_differences(body, sample, placeholders=ALWAYS | placeholders) == []
    assert list(body) == list(sample)  # the envelope's keys, in BrainCert's order
    assert (body["resource"], body["action"]) == (sample["resource"], sample["action"])
    if "timestamp" in sample:
        occurred_at = dt.datetime.fromisoformat(sample["created_at"])
        assert body["timestamp"] == int(occurred_at.timestamp())
    assert raw == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def test_without_domain_or_tenant_in_the_data_braincert_gets_the_schools_slug_and_id():
    school = SchoolFactory(slug="lycee-hugo")
    event_type, data, _ = CASES["User Updated"]
    data = {key: value for key, value in data.items() if key not in ("domain_id", "tenant_id")}

    body, _ = vendor_body(
        school,
        profile="braincert",
        event_type=event_type,
        data=data,
        occurred_at="2022-05-11T01:20:54.000Z",
    )

    assert (body["tenant_id"], body["domain_id"]) == (str(school.id), "lycee-hugo")


def test_the_braincert_profile_in_xml_is_the_same_tree_with_a_declaration():
    event_type, data, _ = CASES["User Created"]
    data = {**data, "user": {**data["user"], "groups": []}}

    _, raw = vendor_body(
        SchoolFactory(),
        profile="braincert",
        event_type=event_type,
        data=data,
        occurred_at="2024-02-14T10:30:00.000Z",
        content_type="xml",
    )

    assert raw.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<webhook><id>')
    parsed = xmltodict.parse(raw)["webhook"]
    assert (parsed["resource"], parsed["action"]) == ("user", "signup")
    assert parsed["payload"]["date_added"] == "2024-02-14T10:30:00.000Z"
    assert parsed["payload"]["groups"] is None  # an empty list is an empty element
    assert b"<groups></groups>" in raw
    assert parsed["payload"]["roles"] == [
        {"role_id": "1", "role_name": "Student"},
        {"role_id": "2", "role_name": "Course Contributor"},
    ]


def test_a_certificate_that_does_not_expire_is_expiry_no_with_no_date():
    event_type, data, _ = CASES["Course Completed"]
    data = {**data, "certificate": {"issued": True, "expires_at": None}}

    body, _ = vendor_body(
        SchoolFactory(),
        profile="braincert",
        event_type=event_type,
        data=data,
        occurred_at="2024-02-14T12:00:00.000Z",
    )

    assert body["payload"]["completion_details"] == {
        "certificate_issued": "yes",
        "certificate_expiry": "no",
        "certificate_expiration_date": None,
    }
