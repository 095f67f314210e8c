"""API shapes of deliveries and their attempts."""

from __future__ import annotations

from rest_framework import serializers

from .models import Delivery


class AttemptOutput(serializers.Serializer):
    delivery = serializers.UUIDField(source="delivery_id")
    number = serializers.IntegerField()
    trigger = serializers.CharField()
    succeeded = serializers.BooleanField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    request_url = serializers.CharField()
    request_headers = serializers.DictField(child=serializers.CharField())
    response_status = serializers.IntegerField(allow_null=True)
    response_headers = serializers.DictField(child=serializers.CharField())
    response_body = serializers.CharField()
    response_body_truncated = serializers.BooleanField()
    error_kind = serializers.CharField()
    error_message = serializers.CharField()


class DeliveryOutput(serializers.ModelSerializer):
    event = serializers.UUIDField(source="event_id")
    subscription = serializers.UUIDField(source="subscription_id")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "event_type",
            "subscription",
            "status",
            "is_test",
            "attempts",
            "created_at",
            "next_attempt_at",
            "last_attempt_at",
            "last_response_status",
            "last_error_kind",
            "last_error",
            "delivered_at",
        ]
        read_only_fields = fields


class DeliveryDetailOutput(DeliveryOutput):
    content_type = serializers.CharField()
    body = serializers.SerializerMethodField(help_text="The exact body sent, as text.")
    attempt_log = AttemptOutput(many=True)

    class Meta(DeliveryOutput.Meta):
        fields = [*DeliveryOutput.Meta.fields, "content_type", "body", "attempt_log"]
        read_only_fields = fields

    def get_body(self, delivery: Delivery) -> str:
        return bytes(delivery.body).decode("utf-8", errors="replace")


class RetriggerOutput(serializers.Serializer):
    retriggered = serializers.BooleanField(
        help_text="True when the delivery is being sent now; see `outcome` otherwise."
    )
    outcome = serializers.ChoiceField(
        choices=["queued", "already_queued", "in_flight", "webhook_disabled"],
        help_text=(
            "queued: sent now; already_queued: an earlier retrigger is about to send it; "
            "in_flight: a worker is sending it right now; webhook_disabled: nothing is sent."
        ),
    )
