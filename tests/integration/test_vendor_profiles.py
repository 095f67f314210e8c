"""End to end with vendor profiles: one published event, a real worker, each webhook speaking
as its vendor, every receiver verifying its vendor's way."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from deliveries.models import Delivery, DeliveryStatus
from events.services import event_publish
from tests.schools.factories import SchoolFactory
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait_delivered(count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = list(Delivery.objects.values_list("status", flat=True))
        if len(statuses) == count and set(statuses) == {DeliveryStatus.DELIVERED}:
            return
        time.sleep(0.05)
    raise AssertionError(f"not delivered: {list(Delivery.objects.values('status', 'last_error'))}")


def test_one_event_reaches_each_webhook_as_its_vendor_sends_it(
    worker_process, catalog, receiver, client
):
    school = SchoolFactory(timezone="Europe/Paris", language="de")
    webhooks = {
        profile: SubscriptionFactory(
            school=school, url=receiver.url(f"/{profile}"), topics=["course.*"], profile=profile
        )
        for profile in ("standard", "edusign", "braincert", "edume")
    }
    # edudip has no course events: its webhook gets nothing.
    SubscriptionFactory(school=school, url=receiver.url("/edudip"), topics=["*"], profile="edudip")

    with transaction.atomic():
        event_publish(
            school=school,
            type="course.created",
            data={
                "course": {"id": 4711, "name": "Mathematics 101", "key": "math101"},
                "group": {"id": 12},
                "teams": [],
                "modules": [{"id": 3}],
            },
        )

    _wait_delivered(4)
    assert receiver.received("/edudip") == []
    bodies = {}
    for profile, webhook in webhooks.items():
        [request] = receiver.received(f"/{profile}")
        assert Webhook(webhook.secret).verify(request.body, request.headers)
        bodies[profile] = json.loads(request.body)
    [edusign] = receiver.received("/edusign")
    assert (
        edusign.headers["x-edusign-hmac"]
        == hmac.new(webhooks["edusign"].secret.encode(), edusign.body, hashlib.sha256).hexdigest()
    )
    assert (edusign.headers["x-edusign-lang"], edusign.headers["x-edusign-school-id"]) == (
        "de",
        str(school.id),
    )
    assert bodies["standard"]["type"] == "course.created"
    assert bodies["edusign"] == {"type": "on_course_created", "appId": None, "courseId": 4711}
    assert bodies["braincert"]["payload"] == {"id": 4711, "name": "Mathematics 101"}
    assert (bodies["braincert"]["resource"], bodies["braincert"]["action"]) == (
        "course",
        "created",
    )
    assert bodies["edume"]["payload"] == {
        "group": {"groupId": 12},
        "teams": [],
        "course": {"courseId": 4711, "courseKey": "math101"},
        "modules": [{"moduleId": 3}],
        "version": 1,
    }


def test_an_edudip_webhook_is_signed_for_the_public_key_the_platform_serves(
    worker_process, catalog, receiver, client
):
    school = SchoolFactory()
    SubscriptionFactory(
        school=school, url=receiver.url("/webinars"), topics=["webinar.*"], profile="edudip"
    )
    public_key = load_pem_public_key(
        client.get("/.well-known/webhooks/ecdsa-public-key.pem").content
    )

    with transaction.atomic():
        event_publish(
            school=school,
            type="webinar.deleted",
            data={"webinar": {"id": 48213, "title": "Webhooks for school platforms"}},
        )

    _wait_delivered(1)
    [request] = receiver.received("/webinars")
    assert request.headers["x-edudip-signature-algorithm"] == "SHA256"
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(
        base64.b64decode(request.headers["x-edudip-signature"]),
        request.body,
        ec.ECDSA(hashes.SHA256()),
    )
    assert json.loads(request.body)["data"]["webinar"]["id"] == 48213
