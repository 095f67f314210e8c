"""API shapes of subscriptions: what clients send, and what they get back (never a secret)."""

from __future__ import annotations

from rest_framework import serializers

from .models import ContentType, Subscription


class SubscriptionOutput(serializers.ModelSerializer):
    class Meta:
        model = Subscription
        fields = [
            "id",
            "name",
            "url",
            "topics",
            "content_type",
            "body_template",
            "basic_auth_enabled",
            "basic_auth_username",
            "custom_headers",
            "sign_ed25519",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "failing_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscriptionCreatedOutput(SubscriptionOutput):
    signing_secret = serializers.CharField(
        help_text="The whsec_ secret to verify signatures with; shown only now."
    )

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "signing_secret"]
        read_only_fields = fields


class SubscriptionInput(serializers.Serializer):
    """Fields a client may set; every other check happens in the service, as in the admin."""

    name = serializers.CharField(max_length=200)
    url = serializers.CharField(max_length=2000)
    topics = serializers.ListField(
        child=serializers.CharField(max_length=100),
        help_text="Event types or glob patterns (course.created, course.*, *).",
    )
    content_type = serializers.ChoiceField(choices=ContentType.choices, default=ContentType.JSON)
    body_template = serializers.CharField(allow_blank=True, default="", max_length=20_000)
    basic_auth_enabled = serializers.BooleanField(default=False)
    basic_auth_username = serializers.CharField(allow_blank=True, default="", max_length=200)
    basic_auth_password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Stored encrypted, never returned. Omit to keep the current one.",
    )
    custom_headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=1000), default=dict
    )
    sign_ed25519 = serializers.BooleanField(default=False)
    is_active = serializers.BooleanField(default=True)


class SecretOutput(serializers.Serializer):
    signing_secret = serializers.CharField(help_text="The new whsec_ secret; shown only now.")
    previous_secrets_expire_at = serializers.DateTimeField(
        help_text="Until then the previous secret keeps signing too."
    )


class TestInput(serializers.Serializer):
    event_type = serializers.CharField(max_length=100, help_text="Whose sample payload to send.")


class RecoverInput(serializers.Serializer):
    since = serializers.DateTimeField(help_text="Re-send failed deliveries created since then.")


class CountOutput(serializers.Serializer):
    count = serializers.IntegerField()


class PreviewInput(serializers.Serializer):
    event_type = serializers.CharField(max_length=100)
    body_template = serializers.CharField(
        allow_blank=True,
        required=False,
        max_length=20_000,
        help_text="Defaults to the webhook's own template.",
    )
    content_type = serializers.ChoiceField(choices=ContentType.choices, required=False)


class PreviewOutput(serializers.Serializer):
    content_type = serializers.CharField()
    body = serializers.CharField()
