"""What happens at a school: the catalog of event types and the event log (the outbox)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from jsonschema import Draft202012Validator

from common.admin_display import datetime_text

from .schemas import schema_validator
from .search import PayloadVector

EVENT_TYPE_KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"

validate_event_type_key = RegexValidator(
    regex=EVENT_TYPE_KEY_PATTERN,
    message=_("Use a dotted lowercase key such as course.created."),
    code="invalid_event_type_key",
)


class EventType(models.Model):
    """One entry of the catalog: what subscriptions pick as topics and events are typed with."""

    key = models.CharField(
        _("key"), primary_key=True, max_length=100, validators=[validate_event_type_key]
    )
    group = models.CharField(
        _("group"), max_length=60, help_text=_("The resource it is about, e.g. Courses.")
    )
    description = models.TextField(_("description"), blank=True)
    sample_payload = models.JSONField(_("sample payload"), default=dict, blank=True)
    json_schema = models.JSONField(
        _("JSON Schema"),
        default=dict,
        blank=True,
        help_text=_("JSON Schema that event data must validate against."),
    )
    version = models.PositiveSmallIntegerField(_("version"), default=1)
    deprecated = models.BooleanField(
        _("deprecated"),
        default=False,
        help_text=_("Still accepted, with a warning in the log; kept for old events."),
    )
    shipped = models.BooleanField(
        _("shipped"),
        default=False,
        editable=False,
        help_text=_("Part of the catalog shipped with the product (updated on upgrade)."),
    )

    class Meta:
        ordering = ["group", "key"]
        verbose_name = _("event type")
        verbose_name_plural = _("event types")

    def __str__(self) -> str:
        return self.key

    @cached_property
    def data_validator(self) -> Draft202012Validator:
        """The compiled validator of ``json_schema``, found once per instance: the per-process
        copies publishing reads (``selectors.event_type_for_publish``) are replaced when the
        type changes, never changed in place."""
        return schema_validator(self.json_schema)


class Event(models.Model):
    """Something that happened at a school, stored in the publisher's transaction.

    The table is an outbox: ``fanned_out_at`` is empty until the event has been turned into one
    delivery per matching subscription.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column index on the two keys: school_created and type_created begin with them.
    school = models.ForeignKey(
        "schools.School",
        verbose_name=_("school"),
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    type = models.ForeignKey(
        EventType,
        on_delete=models.PROTECT,
        db_column="type",
        related_name="events",
        verbose_name=_("event type"),
        db_index=False,
    )
    data = models.JSONField(_("data"), default=dict)
    occurred_at = models.DateTimeField(_("occurred at"))
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    # NULL, not "", for "no key": the per-school unique constraint ignores NULLs.
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    fanned_out_at = models.DateTimeField(_("fanned out at"), null=True, blank=True)
    # A sample event made by Send Test: kept with its test delivery, out of the event log.
    is_test = models.BooleanField(_("test"), default=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("event")
        verbose_name_plural = _("events")
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
            # The outbox, in the order fan-out takes it: a batch reads the events it takes,
            # however many wait behind them.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(fanned_out_at__isnull=True),
                name="event_outbox_in_order_idx",
            ),
            # Payload search (search.py): every text and number value of the data. Built by
            # migration 0011, on PostgreSQL only.
            GinIndex(PayloadVector(F("data")), name="event_data_search_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type_id} {self.id}"


class ScheduledEventStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    PUBLISHED = "published", _("Published")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed")


class ScheduledEvent(models.Model):
    """An event the platform asked to publish at a given instant (a course's start, its end).

    Published by the beat-driven ``scheduled_events_publish_due`` when ``due_at`` has come,
    exactly once; until then it can be moved or cancelled, by id or by the platform's ``key``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey(
        "schools.School",
        verbose_name=_("school"),
        on_delete=models.CASCADE,
        related_name="scheduled_events",
    )
    type = models.ForeignKey(
        EventType,
        on_delete=models.PROTECT,
        db_column="type",
        related_name="scheduled_events",
        verbose_name=_("event type"),
    )
    data = models.JSONField(_("data"), default=dict)
    due_at = models.DateTimeField(_("due at"), help_text=_("When to publish it."))
    # The platform's own name for it (e.g. course-4711-start), so it can move or cancel it later.
    # NULL, not "", for "no key": the per-school unique constraint ignores NULLs.
    key = models.CharField(_("key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=ScheduledEventStatus.choices,
        default=ScheduledEventStatus.SCHEDULED,
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    event = models.OneToOneField(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scheduled_event",
        help_text=_("The event it became."),
        verbose_name=_("event"),
    )
    error = models.TextField(_("error"), blank=True, help_text=_("Why it could not be published."))

    class Meta:
        ordering = ["due_at"]
        verbose_name = _("scheduled event")
        verbose_name_plural = _("scheduled events")
        constraints = [
            models.UniqueConstraint(
                fields=["school", "key"],
                condition=Q(key__isnull=False),
                name="scheduled_event_key_unique_per_school",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ScheduledEventStatus.values),
                name="scheduled_event_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=ScheduledEventStatus.PUBLISHED) | Q(published_at__isnull=False),
                name="scheduled_event_published_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status=ScheduledEventStatus.CANCELLED) | Q(cancelled_at__isnull=False),
                name="scheduled_event_cancelled_has_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(status="scheduled"),
                name="scheduled_event_due_idx",
            ),
            models.Index(fields=["school", "-due_at"], name="scheduled_event_school_idx"),
        ]

    def __str__(self) -> str:
        # The admin's name of it (breadcrumbs, titles, messages), in the reader's language, its
        # time as every admin page shows times: in the school's zone, to the second, named.
        return _("%(type)s at %(due_at)s (%(status)s)") % {
            "type": self.type_id,
            "due_at": datetime_text(self.due_at, self.school.timezone),
            "status": self.get_status_display(),
        }
