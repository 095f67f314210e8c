import json

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation
from standardwebhooks.webhooks import Webhook

from deliveries.models import AttemptTrigger, Delivery, DeliveryStatus
from deliveries.services import delivery_test_send
from events.models import Event, EventType
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_send_test_delivers_the_sample_payload_now_and_shows_the_answer(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/t"), topics=["course.*"])
    receiver.script("/t", Reply(status=202, body=b'{"queued": true}', headers={"X-Req": "42"}))

    attempt = delivery_test_send(subscription=subscription, event_type="course.created")

    [received] = receiver.received("/t")
    sample = EventType.objects.get(key="course.created").sample_payload
    assert json.loads(received.body)["data"]["course"]["id"] == sample["course"]["id"]
    assert Webhook(subscription.secret).verify(received.body, received.headers)
    assert (attempt.trigger, attempt.response_status) == (AttemptTrigger.TEST, 202)
    assert attempt.response_body == '{"queued": true}'
    assert attempt.response_headers["X-Req"] == "42"
    delivery = Delivery.objects.get(pk=attempt.delivery_id)
    assert (delivery.is_test, delivery.status) == (True, DeliveryStatus.DELIVERED)
    assert Event.objects.get(pk=delivery.event_id).is_test is True


def test_send_test_reaches_a_disabled_webhook_and_never_retries_or_counts(school, receiver):
    subscription = SubscriptionFactory(
        school=school, url=receiver.url("/t"), is_active=False, disabled_reason="Paused."
    )
    receiver.script("/t", Reply(status=500))

    attempt = delivery_test_send(subscription=subscription, event_type="course.created")

    subscription.refresh_from_db()
    delivery = Delivery.objects.get(pk=attempt.delivery_id)
    assert attempt.response_status == 500
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    assert subscription.failing_since is None


def test_send_test_with_an_unknown_event_type_is_refused(school):
    subscription = SubscriptionFactory(school=school)

    with pytest.raises(ValidationError) as raised:
        delivery_test_send(subscription=subscription, event_type="course.exploded")

    assert raised.value.message_dict == {"event_type": ["Unknown event type 'course.exploded'."]}
    assert Delivery.objects.count() == 0


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "The webhook body could not be rendered for this event: the body is not valid JSON"),
        (
            "fr",
            "Le corps du webhook n’a pas pu être produit pour cet événement\xa0: le corps n’est",
        ),
    ],
)
def test_send_test_with_a_body_that_cannot_be_rendered_says_why_in_the_readers_language(
    school, receiver, language, sentence
):
    subscription = SubscriptionFactory(
        school=school, url=receiver.url("/t"), body_template='{"course": {{ data.course.name }}}'
    )

    with translation.override(language), pytest.raises(ValidationError) as raised:
        delivery_test_send(subscription=subscription, event_type="course.created")

    [message] = raised.value.message_dict["body_template"]
    assert message.startswith(sentence)
    assert receiver.received("/t") == []
    assert Delivery.objects.count() == 0
