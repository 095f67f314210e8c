"""A webhook disabled by its receiver's 410: the school's admins are e-mailed by a task of its
own, not by the worker's recorder that every other school's results go through."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from deliveries.models import Delivery, DeliveryStatus
from events.services import event_publish
from subscriptions.models import Subscription
from tests.mailserver import MailServer
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_receiver_that_answers_410_gets_its_school_admins_an_e_mail_from_a_task(
    own_worker, school, school_admin, receiver
):
    # Given a worker that sends its mail to a real mail server on loopback
    mail = MailServer().start()
    try:
        worker = own_worker(
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            DJANGO_EMAIL_HOST=mail.host,
            DJANGO_EMAIL_PORT=str(mail.port),
        )
        receiver.script("/gone", default=Reply(status=410))
        subscription = SubscriptionFactory(school=school, name="CRM", url=receiver.url("/gone"))

        # When the receiver answers 410 Gone
        with transaction.atomic():
            event = event_publish(
                school=school, type="course.created", data={"course": {"id": "c-1"}}
            )
        [message] = mail.wait_for(1, timeout=30)
    finally:
        mail.stop()

    # Then the webhook is off and its school's admin reads why, in the school's language
    subscription.refresh_from_db()
    assert not subscription.is_active
    assert Delivery.objects.get(event=event).status == DeliveryStatus.FAILED
    assert message["To"] == "ada@lycee.example.org"
    assert message["Subject"].strip() == "Webhook désactivé\xa0: CRM (Lycée Victor Hugo)"
    assert "410 Gone" in message.get_content()
    # sent by its own task, which the worker ran apart from the recorder
    deadline = time.monotonic() + 10
    while "subscriptions.disabled_notify" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Task subscriptions.disabled_notify" in worker.log()
    assert Subscription.objects.filter(pk=subscription.pk, is_active=False).exists()
