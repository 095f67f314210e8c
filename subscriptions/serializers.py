"""API shapes of subscriptions: what clients send, and what they get back (never a secret)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api import (
    DateTimeField,
    ModelInputSerializer,
    StrictBooleanField,
    StrictCharField,
    UnknownFieldsRefused,
)

from .models import EDITABLE_FIELDS, SECRET_MASK, STATE_FIELDS, ContentType, Profile, Subscription


class CircuitOutput(serializers.Serializer):
    """The webhook's circuit breaker (``closed`` while deliveries flow)."""

    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])
    since = serializers.DateTimeField(
        allow_null=True, help_text="When it opened (or last closed); null if it never opened."
    )
    consecutive_failures = serializers.IntegerField(
        help_text="Network failures in a row (timeouts, refused connections, DNS, TLS)."
    )
    next_probe_at = serializers.DateTimeField(
        allow_null=True, help_text="While open: when one delivery is sent as a probe."
    )


_PAYLOAD_FILTER_HELP = (
    "Only events whose data pass this filter; null: every event of the topics. One condition "
    '{"field": "group.id", "op": "eq", "value": 12} or a group {"all": [...]} / '
    '{"any": [...]} of them (3 levels, 20 conditions). op: eq, ne, in, not_in, gt, gte, lt, lte, '
    "contains, starts_with, ends_with, exists. A field the event lacks fails its comparison. "
    "Checked against the topics' schemas and samples."
)


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "additionalProperties": True,
        "example": {
            "all": [
                {"field": "group.id", "op": "eq", "value": 12},
                {"field": "course.payment_type", "op": "in", "value": ["free"]},
            ]
        },
    }
)
class PayloadFilterField(serializers.JSONField):
    """A webhook's payload filter (``webhook_engine.filters``): JSON, checked by the service."""


class SubscriptionOutput(serializers.ModelSerializer):
    circuit = serializers.SerializerMethodField(
        help_text="While open, the webhook's deliveries wait and one probe goes at a time; "
        "the first answer from the receiver closes it."
    )
    url = serializers.CharField(
        help_text=f"The URL, each value of its query string reading {SECRET_MASK}."
    )
    custom_headers = serializers.DictField(
        child=serializers.CharField(),
        help_text=f"Name: value; a secret header's value reads {SECRET_MASK}.",
    )
    secret_headers = serializers.ListField(
        child=serializers.CharField(), help_text="The headers marked secret."
    )
    payload_filter = PayloadFilterField(
        allow_null=True, read_only=True, help_text=_PAYLOAD_FILTER_HELP
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            *EDITABLE_FIELDS,
            *STATE_FIELDS,
            "circuit",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CircuitOutput)
    def get_circuit(self, obj: Subscription) -> dict[str, Any]:
        state = getattr(obj, "endpoint_state", None)
        if state is None:
            return {
                "state": "closed",
                "since": None,
                "consecutive_failures": 0,
                "next_probe_at": None,
            }
        return CircuitOutput(
            {
                "state": state.circuit_state,
                "since": state.circuit_changed_at,
                "consecutive_failures": state.consecutive_failures,
                "next_probe_at": None if state.circuit_state == "closed" else state.probe_at,
            }
        ).data


class SubscriptionCreatedOutput(SubscriptionOutput):
    signing_secret = serializers.CharField(
        help_text="The whsec_ secret to verify signatures with; shown only now."
    )

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "signing_secret"]
        read_only_fields = fields


class SubscriptionInput(UnknownFieldsRefused, ModelInputSerializer):
    """The settings a client may set (``EDITABLE_FIELDS``) and the write-only password; every
    other check happens in the service, as in the admin. Fields not declared here are the
    model's, with its defaults."""

    url = StrictCharField(  # the service checks it, with the admin's words
        max_length=2000,
        help_text=f"A query value given as {SECRET_MASK} keeps the stored one.",
    )
    topics = serializers.ListField(
        child=StrictCharField(max_length=100),
        help_text="Event types or glob patterns (course.created, course.*, *).",
    )
    body_template = StrictCharField(allow_blank=True, default="", max_length=20_000)
    payload_filter = PayloadFilterField(
        allow_null=True, required=False, default=None, help_text=_PAYLOAD_FILTER_HELP
    )
    basic_auth_password = StrictCharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Stored encrypted, never returned. Omit to keep the current one.",
    )
    custom_headers = serializers.DictField(
        child=StrictCharField(allow_blank=True, max_length=1000),
        default=dict,
        help_text=(
            f"Name: value. Give a secret header's value as {SECRET_MASK} to keep the stored one."
        ),
    )
    secret_headers = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        help_text=(
            "Names of custom headers whose values are secret: stored encrypted, never returned, "
            "left out of the delivery log. Names like X-Api-Key, X-Auth-Token or X-Signature are "
            "secret without being listed."
        ),
    )

    class Meta:
        model = Subscription
        fields = [*EDITABLE_FIELDS, "basic_auth_password"]

    def also_accepted(self) -> set[str]:
        """A webhook as the API shows it may be sent back (GET, change, PUT)."""
        return set(SubscriptionCreatedOutput().fields)


class SecretOutput(serializers.Serializer):
    signing_secret = serializers.CharField(help_text="The new whsec_ secret; shown only now.")
    previous_secrets_expire_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Until then the previous secrets keep signing too (the latest of their "
        "stored ends); null when none does (an unreadable secret stops at once).",
    )


class TestInput(UnknownFieldsRefused, serializers.Serializer):
    event_type = StrictCharField(max_length=100, help_text="Whose sample payload to send.")


class PauseInput(UnknownFieldsRefused, serializers.Serializer):
    resume_at = DateTimeField(
        required=False,
        allow_null=True,
        help_text="Resume automatically then (in the future); omit or null to resume by hand.",
    )


class RecoverInput(UnknownFieldsRefused, serializers.Serializer):
    since = DateTimeField(help_text="Re-send failed deliveries created since then.")


class CountOutput(serializers.Serializer):
    count = serializers.IntegerField()


class ReplayInput(UnknownFieldsRefused, serializers.Serializer):
    event_types = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        max_length=500,
        help_text="Replay events of these types; empty or left out: every type the webhook "
        "receives.",
    )
    since = DateTimeField(
        required=False, help_text="Events published at or after this time (all if left out)."
    )
    until = DateTimeField(
        required=False, help_text="Events published before this time (up to now if left out)."
    )
    dry_run = StrictBooleanField(
        default=False, help_text="Only count the deliveries a replay would make; send nothing."
    )


class ReplayOutput(serializers.Serializer):
    count = serializers.IntegerField(
        help_text="Deliveries made (or, in a dry run, that a replay would make now)."
    )
    queued = serializers.IntegerField(
        help_text="Of those, being sent (the others could not be rendered with the webhook's "
        "body template and failed at once); 0 in a dry run."
    )
    dry_run = serializers.BooleanField()
    max_events = serializers.IntegerField(help_text="The most events one replay may send.")


class PreviewInput(UnknownFieldsRefused, serializers.Serializer):
    event_type = StrictCharField(max_length=100)
    body_template = StrictCharField(
        allow_blank=True,
        required=False,
        max_length=20_000,
        help_text=(
            "Defaults to the webhook's own template (none when previewing a vendor profile)."
        ),
    )
    content_type = serializers.ChoiceField(choices=ContentType.choices, required=False)
    profile = serializers.ChoiceField(
        choices=Profile.choices,
        required=False,
        help_text="Defaults to the webhook's own delivery profile.",
    )


class PreviewOutput(serializers.Serializer):
    content_type = serializers.CharField()
    body = serializers.CharField()
