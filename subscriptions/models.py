"""Who wants what: a school's webhook subscriptions and their signing secrets."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .topics import topic_matches


class ContentType(models.TextChoices):
    JSON = "json", "JSON (application/json)"
    XML = "xml", "XML (application/xml)"


# What a secret value (a secret custom header's, a value in the URL's query string) reads as
# wherever it is shown or returned; given back (the admin form, the API), it keeps the stored
# one. Not a valid header value itself.
SECRET_MASK = "••••••••"  # noqa: S105 - a mask, not a secret


# The settings a school chooses for a webhook, in the settings page's order. The services, the
# API's input and output and the admin form take their fields from here: a new setting is a
# model field plus its name in this tuple.
EDITABLE_FIELDS = (
    "name",
    "url",
    "topics",
    "content_type",
    "basic_auth_enabled",
    "basic_auth_username",
    "custom_headers",
    "secret_headers",
    "body_template",
    "sign_ed25519",
    "is_active",
)


class Subscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey(
        "schools.School", on_delete=models.CASCADE, related_name="subscriptions"
    )
    name = models.CharField(max_length=200)
    # The URL with each value of its query string (?token=...) replaced by SECRET_MASK when it
    # has any; the URL as entered is then in url_encrypted (selectors.subscription_url).
    url = models.URLField("URL", max_length=2000)
    url_encrypted = models.TextField(blank=True, editable=False)
    topics = models.JSONField(
        default=list, help_text="Event types or glob patterns such as course.* or *."
    )
    content_type = models.CharField(
        max_length=8, choices=ContentType.choices, default=ContentType.JSON
    )
    body_template = models.TextField(
        "webhook body",
        blank=True,
        help_text="A custom body (Django template language); empty sends the standard envelope.",
    )
    basic_auth_enabled = models.BooleanField("basic authentication", default=False)
    basic_auth_username = models.CharField(max_length=200, blank=True)
    # Fernet ciphertext (subscriptions/crypto.py); never the password itself.
    basic_auth_password_encrypted = models.TextField(blank=True, editable=False)
    # Every custom header, name: value, except that a secret one's value is SECRET_MASK
    # here and its real value is in custom_headers_encrypted (selectors.subscription_custom_headers
    # gives them all).
    custom_headers = models.JSONField(
        default=dict, blank=True, help_text="Extra request headers, as name: value."
    )
    secret_headers = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "Names of custom headers whose values are secret. Headers named like a credential "
            "(Authorization-like, token, key, secret, password, signature, ...) are secret anyway."
        ),
    )
    # Fernet ciphertext of {name: value} of the secret custom headers (subscriptions/crypto.py).
    custom_headers_encrypted = models.TextField(blank=True, editable=False)
    sign_ed25519 = models.BooleanField(
        "asymmetric signature (v1a)",
        default=False,
        help_text="Also sign with the platform's Ed25519 key, verifiable with its public key.",
    )
    is_active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Start of the current run of failed attempts; cleared by the next success.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["school", "name"]
        verbose_name = "webhook"
        permissions = [
            ("send_test_subscription", "Can send a test delivery to a webhook"),
            ("manage_secret_subscription", "Can see and rotate a webhook's signing secret"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["school", "name"], name="subscription_name_per_school"),
        ]
        indexes = [
            models.Index(fields=["school", "is_active"], name="subscription_school_active_idx"),
            models.Index(
                fields=["failing_since"],
                condition=Q(is_active=True, failing_since__isnull=False),
                name="subscription_failing_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, event_type: str) -> bool:
        return topic_matches(self.topics, event_type)


class SigningSecret(models.Model):
    """A ``whsec_`` secret of a subscription, encrypted. Every secret that has not expired signs:
    after a rotation the old one keeps signing until ``expires_at``, so receivers can switch."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="signing_secrets"
    )
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["subscription", "-created_at"]
        indexes = [
            models.Index(fields=["subscription", "-created_at"], name="signing_secret_sub_idx"),
        ]

    def __str__(self) -> str:
        return f"Signing secret of {self.subscription_id} from {self.created_at:%Y-%m-%d %H:%M}"
