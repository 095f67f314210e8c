"""Writes of the subscriptions app."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from events.models import EventType
from schools.models import School

from .models import Subscription
from .topics import topic_pattern_errors

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret


def signing_secret_generate() -> str:
    """A new Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def subscription_topics_errors(topics: object) -> list[str]:
    """What is wrong with a list of topic patterns, checked against the event catalog."""
    return topic_pattern_errors(topics, EventType.objects.values_list("key", flat=True))


def _subscription_validate(subscription: Subscription) -> None:
    errors: dict[str, list[str]] = {}
    try:
        subscription.full_clean(exclude=["signing_secret"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    topic_errors = subscription_topics_errors(subscription.topics)
    if topic_errors:
        errors.setdefault("topics", []).extend(topic_errors)
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def subscription_save(*, subscription: Subscription) -> Subscription:
    """Validate and save a new or changed subscription; a new one gets its signing secret.

    Raises ``ValidationError`` with a field map when a field is invalid or a topic pattern matches
    no event type in the catalog.
    """
    _subscription_validate(subscription)
    if not subscription.signing_secret:
        subscription.signing_secret = signing_secret_generate()
    subscription.save()
    return subscription


def subscription_create(
    *,
    school: School,
    name: str,
    url: str,
    topics: list[str],
    content_type: str = "json",
    is_active: bool = True,
) -> Subscription:
    """Validate and create a subscription with a fresh signing secret.

    Raises ``ValidationError`` with a field map when a field is invalid or a topic pattern matches
    no event type in the catalog.
    """
    subscription = Subscription(
        school=school,
        name=name,
        url=url,
        topics=list(topics),
        content_type=content_type,
        is_active=is_active,
    )
    return subscription_save(subscription=subscription)


def subscription_update(*, subscription: Subscription, **fields: Any) -> Subscription:
    """Change the given fields after validating the result; raises ``ValidationError``."""
    allowed = {"name", "url", "topics", "content_type", "is_active"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"subscription_update cannot change {sorted(unknown)}")
    for name, value in fields.items():
        setattr(subscription, name, value)
    if fields.get("is_active"):
        subscription.disabled_reason = ""
        subscription.disabled_at = None
    return subscription_save(subscription=subscription)
