"""BrainCert's webhooks, as its "Understanding Webhooks" page shows them (24 topics, 23 samples).

Every body is ``{id, resource, action, [tenant_id], [domain_id], created_at, [timestamp],
payload}``: which of the bracketed keys a topic has is as its sample shows. ``resource`` and
``action`` are BrainCert's (``user``/``signup``, ``assessment``, ``virtual classroom``,
``course_completion``, ``purchase``, ``enrollment``), dates are UTC with milliseconds
(``2024-02-14T10:30:00.000Z``), ``timestamp`` is the event's Unix time, and the payload has
BrainCert's field names. BrainCert signs nothing: receivers rely on basic authentication.
``domain_id`` and ``tenant_id`` are the event's ``data.domain_id`` / ``data.tenant_id`` when the
platform sends them, else the school's slug and id (the school is the tenant).
"""

from __future__ import annotations

from typing import Any

from .base import Profile
from .mapping import (
    CAPITALIZED,
    IS_SET,
    TEXT,
    UNIX,
    UTC_MS,
    UTC_S,
    YES_NO,
    Const,
    Each,
    Field,
    FirstOf,
    FullName,
    Obj,
    Spec,
    lookup,
    suffix,
)

DOMAIN_ID = FirstOf(Field("$data.domain_id"), Field("$school.slug"))
TENANT_ID = FirstOf(Field("$data.tenant_id"), Field("$school.id", TEXT))


def _body(
    resource: str,
    action: str,
    payload: Spec,
    *,
    tenant: bool = False,
    domain: bool = True,
    timestamp: bool = True,
) -> dict[str, Spec]:
    body: dict[str, Spec] = {
        "id": Field("event.id"),
        "resource": Const(resource),
        "action": Const(action),
    }
    if tenant:
        body["tenant_id"] = TENANT_ID
    if domain:
        body["domain_id"] = DOMAIN_ID
    body["created_at"] = Field("event.occurred_at")
    if timestamp:
        body["timestamp"] = Field("event.occurred_at", UNIX)
    body["payload"] = payload
    return body


PERSON: dict[str, Spec] = {
    "id": Field("id"),
    "first_name": Field("first_name"),
    "last_name": Field("last_name"),
}
INSTRUCTOR: dict[str, Spec] = {**PERSON, "bio": Field("bio")}
ENROLLED_USER: dict[str, Spec] = {
    "email": Field("email"),
    "first_name": Field("first_name"),
    "id": Field("id"),
    "last_name": Field("last_name"),
}
REGISTRATION_FIELDS = Each(
    "custom_registration_fields",
    {"field_id": Field("id"), "field_name": Field("name"), "field_value": Field("value")},
)
GROUPS = Each("groups", {"group_id": Field("id", TEXT), "group_name": Field("name")})
ROLES = Each("roles", {"role_id": Field("id", TEXT), "role_name": Field("name")})

USER_CREATED = Obj(
    "data.user",
    {
        "name": FirstOf(Field("name"), FullName("first_name", "last_name")),
        "user_id": Field("id"),
        "email": Field("email"),
        "date_added": Field("created_at"),
        "avatar_url": Field("avatar_url", default=None),
        "custom_registration_fields": REGISTRATION_FIELDS,
        "groups": GROUPS,
        "roles": ROLES,
    },
)
USER = Obj(
    "data.user",
    {
        **PERSON,
        "email": Field("email"),
        "roles": ROLES,
        "custom_registration_fields": REGISTRATION_FIELDS,
        "groups": GROUPS,
    },
)
GROUP = Obj(
    "data.group",
    {"group_id": Field("id"), "group_name": Field("name"), "description": Field("description")},
)
COURSE = Obj(
    "data.course",
    {
        "id": Field("id"),
        "name": Field("name"),
        "slug": Field("slug"),
        "subtitle": Field("subtitle"),
        "description": Field("description"),
        "course_card_image_url": Field("image_url"),
        "created_at": Field("created_at"),
        "payment_type": Field("payment_type"),
        "instructors": Each("instructors", INSTRUCTOR),
    },
)
BUNDLE = Obj(
    "data.bundle",
    {
        "id": Field("id"),
        "name": Field("name"),
        "slug": Field("slug"),
        "description": Field("description"),
        "bundle_card_image_url": Field("image_url"),
        "created_at": Field("created_at"),
        "payment_type": Field("payment_type"),
        "courses": Each(
            "courses",
            {
                "course_id": Field("id"),
                "course_name": Field("name"),
                "instructors": Each("instructors", INSTRUCTOR),
            },
        ),
    },
)
TEST = Obj(
    "data.test",
    {
        "id": Field("id"),
        "name": Field("name"),
        "slug": Field("slug"),
        "description": Field("description"),
        "tes_card_image_url": Field("image_url"),  # sic: BrainCert's key
        "scoring_type": Field("scoring_type"),
        "time_limit": Field("time_limit"),
        "payment_type": Field("payment_type"),
        "created_at": Field("created_at"),
        "instructor": Obj("instructor", INSTRUCTOR),
    },
)
LIVE_CLASS = Obj(
    "data.live_class",
    {
        "class_id": Field("id"),
        "name": Field("name"),
        "slug": Field("slug"),
        "description": Field("description"),
        "datacenter": Field("datacenter"),
        "class_type": Field("class_type", CAPITALIZED),
        "attendee_limit": Field("attendee_limit"),
        "scheduled_date": Field("scheduled_date"),
        "scheduled_time": Field("scheduled_time"),
        "instructors": Each("instructors", PERSON),
    },
)
PRODUCT = Obj(
    "data.product",
    {
        "product_type": Field(
            "type", lookup({"physical": "Physical product", "digital": "Digital product"})
        ),
        "name": Field("name"),
        "excerpt": Field("excerpt"),
        "slug": Field("url"),
        "price": Field("price", TEXT),
        "discount": Field("discount", TEXT),
        "description": Field("description"),
        "shipping_option": Field("shipping_option", CAPITALIZED),
        "shipping_charge": Field("shipping_charge", TEXT),
        "weight": Field("weight_lb", suffix(" lb")),
        "banner": Field("banner_url"),
        "sku": Field("sku"),
        "track_stock": Field("track_stock"),
        "items_in_stock": Field("items_in_stock"),
    },
)


def _enrollment(item: str) -> dict[str, Spec]:
    return {
        "activated_at": Field("data.enrollment.activated_at"),
        item: Obj(f"data.{item}", {"id": Field("id"), "name": Field("name")}),
        "enrollment_id": Field("data.enrollment.id"),
        "started_at": Field("data.enrollment.started_at"),
        "user": Obj("data.user", ENROLLED_USER),
    }


LIVE_CLASS_ENROLLMENT: dict[str, Spec] = {
    "class_id": Field("data.live_class.id"),
    "live_class": Obj(
        "data.live_class",
        {
            "name": Field("name"),
            "datacenter": Field("datacenter"),
            "class_type": Field("class_type", CAPITALIZED),
            "scheduled_date": Field("scheduled_date"),
            "scheduled_time": Field("scheduled_time"),
        },
    ),
    "enrollment_id": Field("data.enrollment.id"),
    "enrolled_at": Field("data.enrollment.enrolled_at"),
    "user": Obj("data.user", ENROLLED_USER),
    "enrollment_status": Field("data.enrollment.status", CAPITALIZED),
}
COURSE_COMPLETED: dict[str, Spec] = {
    "course": Obj(
        "data.course",
        {
            "id": Field("id"),
            "title": Field("name"),
            "completion_date": Field("$data.completed_at", UTC_S),
        },
    ),
    "user": Obj("data.user", {**PERSON, "email": Field("email")}),
    "completion_details": Obj(
        "data.certificate",
        {
            "certificate_issued": Field("issued", YES_NO),
            "certificate_expiry": Field("expires_at", IS_SET, YES_NO),
            "certificate_expiration_date": Field("expires_at", UTC_S),
        },
    ),
}
TEST_COMPLETED: dict[str, Spec] = {
    "id": Field("data.test.id"),
    "name": Field("data.test.name"),
    "final_score": Field("data.result.final_score"),
    "passing_score": Field("data.result.passing_score"),
    "open_ended": Field("data.test.open_ended", YES_NO),
    "scoring_type": Field("data.test.scoring_type"),
    "time_limit": Field("data.test.time_limit"),
    "manual_scoring": Field("data.result.manual_scoring"),
    "total_questions": Field("data.result.total_questions"),
    "correct_count": Field("data.result.correct_count"),
    "incorrect_count": Field("data.result.incorrect_count"),
    "user": Obj("data.user", {**PERSON, "email": Field("email")}),
}
SALE: dict[str, Spec] = {
    "order_id": Field("data.sale.id"),
    "order_date": Field("data.sale.ordered_at"),
    "payment_method": Field("data.sale.payment_method"),
    "payment_mode": Field("data.sale.payment_mode"),
    "currency": Field("data.sale.currency"),
    "total_amount": Field("data.sale.total_amount"),
    "service_charge": Field("data.sale.service_charge"),
    "total": Field("data.sale.total"),
    "payment_status": Field("data.sale.payment_status"),
    "items": Each(
        "data.sale.items",
        {
            "type": Field(
                "type", lookup({"test": "assessment", "live_class": "virtual classroom"})
            ),
            "name": Field("name"),
            "price": Field("price"),
            "quantity": Field("quantity"),
            "shipping_charge": Field("shipping_charge"),
            "total_shipping_amount": Field("total_shipping_amount"),
            "discount": Field("discount"),
            "item_total": Field("item_total"),
        },
    ),
    "user": Obj(
        "data.user",
        {
            "email": Field("email"),
            "first_name": Field("first_name"),
            "customer_since": Field("customer_since"),
        },
    ),
}

EVENTS: dict[str, Any] = {
    "user.created": _body("user", "signup", USER_CREATED, timestamp=False),
    "group.created": _body("group", "created", GROUP),
    **{
        f"course.{verb}": _body("course", verb, COURSE)
        for verb in ("created", "updated", "deleted")
    },
    **{
        f"bundle.{verb}": _body("bundle", verb, BUNDLE)
        for verb in ("created", "updated", "deleted")
    },
    **{
        f"test.{verb}": _body("assessment", verb, TEST)
        for verb in ("created", "updated", "deleted")
    },
    # "Live Class Updated" has no sample: it is sent as Live Class Created is.
    **{
        f"live_class.{verb}": _body("virtual classroom", verb, LIVE_CLASS)
        for verb in ("created", "updated", "deleted")
    },
    **{f"user.{verb}": _body("user", verb, USER, tenant=True) for verb in ("updated", "deleted")},
    **{
        f"product.{verb}": _body(
            "product", verb, PRODUCT, tenant=True, domain=False, timestamp=False
        )
        for verb in ("created", "deleted")
    },
    "course_enrollment.created": _body(
        "course_enrollment",
        "enrollment",
        _enrollment("course"),
        tenant=True,
        domain=False,
        timestamp=False,
    ),
    "test_enrollment.created": _body(
        "test_enrollment",
        "enrollment",
        _enrollment("test"),
        tenant=True,
        domain=False,
        timestamp=False,
    ),
    "live_class_enrollment.created": _body(
        "virtual classroom",
        "enrollment",
        LIVE_CLASS_ENROLLMENT,
        tenant=True,
        domain=False,
        timestamp=False,
    ),
    "course.completed": _body("course_completion", "completed", COURSE_COMPLETED),
    "test.completed": _body("assessment", "completed", TEST_COMPLETED),
    "sale.completed": _body(
        "purchase", "completed", SALE, tenant=True, domain=False, timestamp=False
    ),
}

PROFILE = Profile(
    key="braincert",
    label="BrainCert",
    vendor="BrainCert",
    content_types=("json", "xml"),
    dates=UTC_MS,
    events=EVENTS,
    body_doc=(
        "`{id, resource, action, [tenant_id], [domain_id], created_at, [timestamp], payload}` "
        "with BrainCert's resource, action and payload fields; the XML form is the same tree "
        "under `<webhook>`"
    ),
    dates_doc="UTC with milliseconds, `2024-02-14T10:30:00.000Z`; `timestamp` in Unix seconds",
    headers_doc="none of its own (BrainCert documents none); basic authentication if set",
    signature_doc="none (BrainCert signs nothing); the Standard Webhooks headers are added",
)
