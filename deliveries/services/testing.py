"""Send Test: a webhook receives an event type's sample payload now, through the delivery path."""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from common.clock import db_now
from events.models import Event, EventType
from subscriptions.crypto import secret_encrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import signing_secrets_active
from subscriptions.services import subscription_secrets_seal
from webhook_engine.bodies import BodyTemplateError
from webhook_engine.vendors import profile_get

from ..models import AttemptTrigger, DeliveryAttempt
from .attempts import deliveries_attempt
from .claim import Claim
from .fan_out import TEMPLATE_FAILURE, Bodies, delivery_build
from .record import deliveries_record
from .send import deliveries_send, headers_redact


def delivery_test_send(*, subscription: Subscription, event_type: str) -> DeliveryAttempt:
    """Send the sample payload of ``event_type`` to the webhook now and return the attempt.

    Runs in the caller's process and returns within the attempt deadline (15 s): the request is
    signed, rendered and sent exactly as a real delivery would be (a disabled webhook too, so it
    can be checked before it is re-enabled). It is logged as a test delivery of a test event;
    it never retries and does not count towards the webhook's failure streak.

    Raises ``ValidationError``: ``event_type`` unknown or not one of the profile's vendor's,
    or a body template that cannot be rendered for the sample (``body_template``); and
    ``Subscription.DoesNotExist`` when the webhook was deleted since the caller read it
    (nothing is sent).
    """
    found = EventType.objects.filter(key=event_type).first()
    if found is None:
        raise ValidationError({"event_type": [_("Unknown event type %r.") % event_type]})
    profile = profile_get(subscription.profile)
    if not profile.has(event_type):
        raise ValidationError(
            {
                "event_type": [
                    _(
                        "%(vendor)s has no event for %(type)s; a webhook with the %(vendor)s "
                        "profile receives only %(vendor)s's events."
                    )
                    % {"vendor": profile.label, "type": event_type}
                ]
            }
        )
    now = db_now()
    with transaction.atomic():
        # Locked while its test delivery is written: a webhook deleted since the caller read it
        # is found gone here, not by the delivery's foreign key at commit.
        Subscription.objects.select_for_update().get(pk=subscription.pk)
        event = Event.objects.create(
            school=subscription.school,
            type=found,
            data=found.sample_payload,
            occurred_at=now,
            fanned_out_at=now,
            is_test=True,
        )
        delivery = delivery_build(
            event=event, subscription=subscription, now=now, bodies=_bodies(event, subscription)
        )
        delivery.is_test = True
        delivery.next_trigger = AttemptTrigger.TEST
        delivery.enqueued_at = None  # sent right here, never by a worker
        delivery.save(force_insert=True)
    attempts = deliveries_attempt(delivery_ids=[delivery.pk])
    if not attempts:
        # Deleted, with its delivery log, between that commit and the claim.
        raise Subscription.DoesNotExist
    return attempts[0]


def _bodies(event: Event, subscription: Subscription) -> Bodies:
    """The event's bodies, the webhook's rendered; raises ``ValidationError`` (``body_template``)
    in the reader's language when its template cannot be rendered for the sample."""
    bodies = Bodies(event)
    try:
        bodies.render(subscription.content_type, subscription.body_template, subscription.profile)
    except BodyTemplateError as exc:
        raise ValidationError(
            {"body_template": [_(TEMPLATE_FAILURE) % {"reason": exc.message()}]}
        ) from exc
    return bodies


def delivery_test_send_settings(
    *,
    subscription: Subscription,
    event_type: str,
    basic_auth_password: str | None = None,
    signing_secret: str | None = None,
) -> DeliveryAttempt:
    """Send Test with the settings as they are on the page, saved or not, and return the attempt.

    ``subscription`` holds the edited settings and is never saved here. A saved webhook signs
    with its own secrets, and the test is logged as its test delivery (the attempt shows the URL
    it went to). A webhook not yet saved (the Add page) signs with ``signing_secret``, the
    secret it will keep when saved, and nothing is logged: the returned attempt has no id.
    ``basic_auth_password`` is the password typed on the page (None: the stored one).

    Raises ``ValidationError`` like ``delivery_test_send``, and for a new webhook without
    ``signing_secret``.
    """
    found = EventType.objects.filter(key=event_type).first()
    if found is None:
        raise ValidationError({"event_type": [_("Unknown event type %r.") % event_type]})
    if basic_auth_password:
        subscription.basic_auth_password_encrypted = secret_encrypt(basic_auth_password)
    # Header values and a URL typed on the page, as a save would store them: sent as typed,
    # and redacted from the attempt log like the stored ones.
    subscription_secrets_seal(subscription=subscription)
    saved = subscription.pk is not None and not subscription._state.adding
    if saved:
        subscription.signing_secrets_cached = list(  # type: ignore[attr-defined]
            signing_secrets_active(subscription=subscription)
        )
    elif signing_secret:
        subscription.signing_secrets_cached = [  # type: ignore[attr-defined]
            SigningSecret(secret_encrypted=secret_encrypt(signing_secret))
        ]
    else:
        raise ValidationError({"__all__": [_("A new webhook needs its signing secret first.")]})
    now = db_now()
    event = Event(
        school=subscription.school,
        type=found,
        data=found.sample_payload,
        occurred_at=now,
        fanned_out_at=now,
        is_test=True,
    )
    delivery = delivery_build(
        event=event, subscription=subscription, now=now, bodies=_bodies(event, subscription)
    )
    delivery.school = subscription.school
    delivery.is_test = True
    delivery.next_trigger = AttemptTrigger.TEST
    delivery.enqueued_at = None
    delivery.attempts = 1
    token = uuid.uuid4()
    claim = Claim(
        delivery=delivery, number=1, token=token, started_at=now, trigger=AttemptTrigger.TEST
    )
    if not saved:
        [result] = deliveries_send([claim])
        return DeliveryAttempt(
            delivery=delivery,
            number=1,
            trigger=AttemptTrigger.TEST,
            started_at=now,
            duration_ms=result.duration_ms,
            request_url=subscription.url,
            request_headers=headers_redact(result.request_headers),
            response_status=result.status,
            response_headers=result.headers,
            response_body=result.body.decode("utf-8", errors="replace"),
            response_body_truncated=result.body_truncated,
            error_kind=result.error_kind,
            error_message=result.error_message,
        )
    with transaction.atomic():
        event.save(force_insert=True)
        delivery.lease_token = token
        delivery.leased_until = now + dt.timedelta(
            seconds=settings.WEBHOOKS_LEASE_SECONDS + settings.WEBHOOKS_TIMEOUT_SECONDS
        )
        delivery.last_attempt_at = now
        delivery.save(force_insert=True)
    results = deliveries_send([claim])
    [attempt] = deliveries_record(claims=[claim], results=results)
    return attempt
