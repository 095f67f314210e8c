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
            "replay_number",
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
        choices=["queued", "already_queued", "in_flight", "webhook_disabled", "template_error"],
        help_text=(
            "queued: sent now; already_queued: an earlier retrigger is about to send it; "
            "in_flight: a worker is sending it right now; webhook_disabled: nothing is sent; "
            "template_error: nothing is sent, the webhook's body template still cannot render "
            "the event (correct it first)."
        ),
    )


class ExportRowOutput(serializers.Serializer):
    """One row of a delivery export (``deliveries/export.py``), for the schema."""

    id = serializers.UUIDField()
    school = serializers.CharField(help_text="The school's slug.")
    webhook_id = serializers.UUIDField()
    webhook_name = serializers.CharField()
    webhook_url = serializers.CharField(help_text="Query values masked, no user-info.")
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    state = serializers.ChoiceField(choices=["pending", "retrying", "delivered", "failed"])
    is_test = serializers.BooleanField()
    replay_number = serializers.IntegerField()
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_response_status = serializers.IntegerField(allow_null=True)
    last_error_kind = serializers.CharField()
    last_error = serializers.CharField(help_text="The webhook's secret values removed.")
    delivered_at = serializers.DateTimeField(allow_null=True)
