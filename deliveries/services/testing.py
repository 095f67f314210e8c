"""Send Test: a webhook receives an event type's sample payload now, through the delivery path."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from events.models import Event, EventType
from subscriptions.models import Subscription
from webhook_engine.vendors import profile_get

from ..models import AttemptTrigger, DeliveryAttempt, DeliveryStatus
from .attempts import deliveries_attempt
from .fan_out import delivery_build


def delivery_test_send(*, subscription: Subscription, event_type: str) -> DeliveryAttempt:
    """Send the sample payload of ``event_type`` to the webhook now and return the attempt.

    Runs in the caller's process and returns within the attempt deadline (15 s): the request is
    signed, rendered and sent exactly as a real delivery would be (a disabled webhook too, so it
    can be checked before it is re-enabled). It is logged as a test delivery of a test event;
    it never retries and does not count towards the webhook's failure streak.

    Raises ``ValidationError``: ``event_type`` unknown or not one of the profile's vendor's,
    or a body template that cannot be rendered for the sample (``body_template``).
    """
    found = EventType.objects.filter(key=event_type).first()
    if found is None:
        raise ValidationError({"event_type": [f"Unknown event type {event_type!r}."]})
    profile = profile_get(subscription.profile)
    if not profile.has(event_type):
        raise ValidationError(
            {
                "event_type": [
                    f"{profile.label} has no event for {event_type}; a webhook with the "
                    f"{profile.label} profile receives only {profile.label}'s events."
                ]
            }
        )
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            school=subscription.school,
            type=found,
            data=found.sample_payload,
            occurred_at=now,
            fanned_out_at=now,
            is_test=True,
        )
        delivery = delivery_build(event=event, subscription=subscription, now=now)
        if delivery.status == DeliveryStatus.FAILED:
            raise ValidationError({"body_template": [delivery.last_error]})
        delivery.is_test = True
        delivery.next_trigger = AttemptTrigger.TEST
        delivery.enqueued_at = None  # sent right here, never by a worker
        delivery.save(force_insert=True)
    [attempt] = deliveries_attempt(delivery_ids=[delivery.pk])
    return attempt
