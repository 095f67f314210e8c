"""Events, deliveries and attempts as the delivery log shows them, without sending anything."""

from __future__ import annotations

from django.utils import timezone

from deliveries.models import AttemptTrigger, Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import event_fan_out
from deliveries.services.record import RecordProgress, deliveries_record
from events.models import Event
from events.services import event_publish
from webhook_engine.errors import ErrorKind


def event_create(school, *, type="course.created", data=None, **fields):
    now = timezone.now()
    return Event.objects.create(
        school=school,
        type_id=type,
        data=data if data is not None else {"course": {"id": "c-1", "name": "Maths"}},
        occurred_at=now,
        fanned_out_at=now,
        **fields,
    )


def delivery_create(subscription, *, event=None, status=DeliveryStatus.FAILED, **fields):
    """A final delivery of ``subscription`` (failed with a 500 by default) with its attempt."""
    event = event or event_create(
        subscription.school, type=fields.pop("event_type", "course.created")
    )
    failed = status == DeliveryStatus.FAILED
    defaults = {
        "school": subscription.school,
        "event": event,
        "subscription": subscription,
        "event_type": event.type_id,
        "body": b'{"hello": "world"}',
        "content_type": "application/json",
        "status": status,
        "attempts": 1,
        "last_attempt_at": timezone.now(),
        "last_response_status": 500 if failed else 200,
        "last_error_kind": ErrorKind.HTTP_STATUS if failed else ErrorKind.NONE,
        "last_error": "The receiver answered 500 Reply." if failed else "",
        "next_attempt_at": timezone.now() if status == DeliveryStatus.PENDING else None,
    }
    defaults.update(fields)
    delivery = Delivery.objects.create(**defaults)
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        trigger=AttemptTrigger.AUTOMATIC,
        started_at=timezone.now(),
        duration_ms=12,
        request_url=subscription.url,
        request_headers={
            "Content-Type": "application/json",
            "webhook-id": f"msg_{delivery.pk.hex}",
            "Authorization": "[redacted]",
            "X-Api-Token": "receiver-token-123",
        },
        response_status=defaults["last_response_status"],
        response_headers={"Content-Type": "text/plain"},
        response_body="database is down" if failed else "ok",
        error_kind=defaults["last_error_kind"],
        error_message=defaults["last_error"],
    )
    return delivery


def deliveries_published(school, count, start=0):
    """Publish ``count`` course.created events (courses c<start>, c<start+1>, ...) and fan each
    out; return the ids of their deliveries, as strings, in publication order."""
    ids = []
    for number in range(start, start + count):
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
    return ids


def recorded_handing_over(claims, results, progress=None, *, hand_over=True):
    """Record ``results`` as the dispatcher does, handing the slots over (``hand_over``);
    return the record's progress (``progress.handed``: the claims it leased)."""
    progress = progress or RecordProgress()
    deliveries_record(
        claims=claims,
        results=results,
        pull_waiting=False,
        progress=progress,
        hand_over=hand_over,
    )
    return progress
