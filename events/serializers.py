"""API shapes of the event catalog and of events."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.api import DateTimeField, StrictCharField, StrictSlugField, UnknownFieldsRefused

from .models import Event, EventType, ScheduledEvent


class EventTypeOutput(serializers.ModelSerializer):
    class Meta:
        model = EventType
        fields = [
            "key",
            "group",
            "description",
            "version",
            "deprecated",
            "sample_payload",
            "json_schema",
        ]
        read_only_fields = fields


class EventInput(UnknownFieldsRefused, serializers.Serializer):
    school = StrictSlugField(help_text="The school's slug.")
    type = StrictCharField(max_length=100, help_text="An event type key, e.g. course.created.")
    data = serializers.DictField(help_text="The event's data; validated against the type's schema.")  # type: ignore[assignment]  # a field, not the property
    occurred_at = DateTimeField(
        required=False,
        help_text="When it happened (default: deliver_at if given, else now). Give a time zone.",
    )
    deliver_at = DateTimeField(
        required=False,
        help_text=(
            "Publish it at this instant instead of now (a course's start): it becomes a "
            "scheduled event, whose key is the Idempotency-Key header if given. One already "
            "past is published now, as occurring at it."
        ),
    )


class EventAccepted(serializers.Serializer):
    id = serializers.UUIDField(
        help_text="The event's id when it was published at once; the scheduled event's id "
        "(/scheduled-events/{id}/) when deliver_at is set."
    )
    status = serializers.ChoiceField(
        choices=["published", "scheduled", "cancelled", "failed"],
        help_text="published: published at once. With deliver_at, the scheduled event's status "
        "now (a retry of the request tells what became of it): scheduled, published, cancelled "
        "or failed.",
    )
    school = serializers.SlugField()
    type = serializers.CharField()
    deliver_at = serializers.DateTimeField(allow_null=True)
    replayed = serializers.BooleanField(
        help_text="True when the Idempotency-Key was seen before: this is the first one."
    )


class EventDeliveryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    subscription = serializers.UUIDField(source="subscription_id")
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_response_status = serializers.IntegerField(allow_null=True)


class EventOutput(serializers.ModelSerializer):
    school = serializers.SlugField(source="school.slug")
    type = serializers.CharField(source="type_id")

    class Meta:
        model = Event
        fields = ["id", "school", "type", "data", "occurred_at", "created_at", "idempotency_key"]
        read_only_fields = fields


class EventDetailOutput(EventOutput):
    deliveries = serializers.SerializerMethodField()

    class Meta(EventOutput.Meta):
        fields = [*EventOutput.Meta.fields, "fanned_out_at", "deliveries"]
        read_only_fields = fields

    def get_deliveries(self, event: Event) -> list[dict[str, Any]]:
        return list(EventDeliveryOutput(event.deliveries.order_by("created_at"), many=True).data)


class ScheduledEventOutput(serializers.ModelSerializer):
    school = serializers.SlugField(source="school.slug")
    type = serializers.CharField(source="type_id")
    event = serializers.UUIDField(source="event_id", allow_null=True)

    class Meta:
        model = ScheduledEvent
        fields = [
            "id",
            "school",
            "type",
            "data",
            "due_at",
            "key",
            "status",
            "created_at",
            "updated_at",
            "published_at",
            "cancelled_at",
            "event",
            "error",
        ]
        read_only_fields = fields


class ScheduledEventInput(UnknownFieldsRefused, serializers.Serializer):
    school = StrictSlugField(help_text="The school's slug.")
    type = StrictCharField(max_length=100)
    data = serializers.DictField()  # type: ignore[assignment]  # a field, not the property
    due_at = DateTimeField(help_text="When to publish it. Give a time zone.")
    key = StrictCharField(
        max_length=255,
        required=False,
        allow_null=True,
        help_text="Your own name for it (e.g. course-4711-start), to find, move or cancel it.",
    )


class ScheduledEventMoveInput(UnknownFieldsRefused, serializers.Serializer):
    # A move's PATCH is not a partial update: due_at is always required. Never partial, so the
    # schema says so too (drf-spectacular describes a partial body with every field optional).
    @property
    def partial(self) -> bool:
        return False

    @partial.setter
    def partial(self, value: bool) -> None:
        pass

    due_at = DateTimeField()
    data = serializers.DictField(required=False, help_text="New data, validated as on creation.")  # type: ignore[assignment]  # a field, not the property
