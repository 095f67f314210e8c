"""What happens at a school: the catalog of event types and the event log (the outbox)."""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

EVENT_TYPE_KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"

validate_event_type_key = RegexValidator(
    regex=EVENT_TYPE_KEY_PATTERN,
    message="Use a dotted lowercase key such as course.created.",
    code="invalid_event_type_key",
)


class EventType(models.Model):
    """One entry of the catalog: what subscriptions pick as topics and events are typed with."""

    key = models.CharField(primary_key=True, max_length=100, validators=[validate_event_type_key])
    group = models.CharField(max_length=60, help_text="The resource it is about, e.g. Courses.")
    description = models.TextField(blank=True)
    sample_payload = models.JSONField(default=dict, blank=True)
    json_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema that event data must validate against."
    )
    version = models.PositiveSmallIntegerField(default=1)
    deprecated = models.BooleanField(
        default=False, help_text="Still accepted, with a warning in the log; kept for old events."
    )
    shipped = models.BooleanField(
        default=False,
        editable=False,
        help_text="Part of the catalog shipped with the product (updated on upgrade).",
    )

    class Meta:
        ordering = ["group", "key"]

    def __str__(self) -> str:
        return self.key


class Event(models.Model):
    """Something that happened at a school, stored in the publisher's transaction.

    The table is an outbox: ``fanned_out_at`` is empty until the event has been turned into one
    delivery per matching subscription.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey("schools.School", on_delete=models.CASCADE, related_name="events")
    type = models.ForeignKey(
        EventType, on_delete=models.PROTECT, db_column="type", related_name="events"
    )
    data = models.JSONField(default=dict)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # NULL, not "", for "no key": the per-school unique constraint ignores NULLs.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["school", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="event_idempotency_key_unique_per_school",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="event_created_idx"),
            models.Index(fields=["school", "-created_at"], name="event_school_created_idx"),
            models.Index(fields=["type", "-created_at"], name="event_type_created_idx"),
            models.Index(
                fields=["created_at"],
                condition=Q(fanned_out_at__isnull=True),
                name="event_awaiting_fan_out_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type_id} {self.id}"

