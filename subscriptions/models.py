"""Who wants what: a school's webhook subscriptions and their signing secrets."""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from webhook_engine.vendors import profile_get

from .topics import topic_matches


class ContentType(models.TextChoices):
    JSON = "json", _("JSON (application/json)")
    XML = "xml", _("XML (application/xml)")


MAX_CONCURRENCY = 100
MAX_RATE_PER_SECOND = 10_000


class Profile(models.TextChoices):
    """How a webhook speaks (``webhook_engine.vendors.PROFILES`` has the same keys)."""

    STANDARD = "standard", "Standard Webhooks"
    EDUSIGN = "edusign", "Edusign"
    BRAINCERT = "braincert", "BrainCert"
    EDUME = "edume", "eduMe"
    EDUDIP = "edudip", "edudip"


# The vendors that send JSON only (BrainCert offers XML too).
JSON_ONLY_PROFILES = (Profile.EDUSIGN, Profile.EDUME, Profile.EDUDIP)
# The vendors whose own signature header carries one signature, made with the newest secret: a
# receiver written for them checks only that one, so a rotation switches it at once (the
# Standard Webhooks header sent beside it carries every secret that signs).
NEWEST_SECRET_ONLY_PROFILES = (Profile.EDUSIGN,)


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
    "payload_filter",
    "content_type",
    "profile",
    "basic_auth_enabled",
    "basic_auth_username",
    "custom_headers",
    "secret_headers",
    "body_template",
    "sign_ed25519",
    "max_concurrency",
    "rate_limit_per_second",
    "is_active",
)

# The webhook's state, which the engine and the pause services own: read-only in the admin and
# the API, and a save writes it as the row has it (``subscription_save``).
STATE_FIELDS = (
    "disabled_reason",
    "disabled_at",
    "failing_since",
    "paused_at",
    "resume_at",
    "catching_up_since",
)


class Subscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey(
        "schools.School",
        verbose_name=_("school"),
        on_delete=models.CASCADE,
        related_name="subscriptions",
    )
    name = models.CharField(_("name"), max_length=200)
    # The URL with each value of its query string (?token=...) replaced by SECRET_MASK when it
    # has any; the URL as entered is then in url_encrypted (selectors.subscription_url).
    url = models.URLField(_("URL"), max_length=2000)
    url_encrypted = models.TextField(blank=True, editable=False)
    topics = models.JSONField(
        _("topics"),
        default=list,
        help_text=_("Event types or glob patterns such as course.* or *."),
    )
    # None: every event of the topics. Else a filter over the event's data
    # (webhook_engine.filters), checked on save against the topics' schemas and samples.
    payload_filter = models.JSONField(
        _("payload filter"),
        null=True,
        blank=True,
        default=None,
        help_text=_(
            "Only events whose data pass this filter, e.g. "
            '{"field": "group.id", "op": "eq", "value": 12}. '
            "Empty: every event of the selected types."
        ),
    )
    content_type = models.CharField(
        "Content-Type", max_length=8, choices=ContentType.choices, default=ContentType.JSON
    )
    profile = models.CharField(
        _("delivery profile"),
        max_length=16,
        choices=Profile.choices,
        default=Profile.STANDARD,
        help_text=_(
            "Standard Webhooks, or exactly as Edusign, BrainCert, eduMe or edudip send: their "
            "body, field names, dates, event names, headers and signature."
        ),
    )
    body_template = models.TextField(
        _("webhook body"),
        blank=True,
        help_text=_("A custom body (Django template language); empty sends the standard envelope."),
    )
    basic_auth_enabled = models.BooleanField(_("basic authentication"), default=False)
    basic_auth_username = models.CharField(
        _("basic-authentication username"), max_length=200, blank=True
    )
    # Fernet ciphertext (subscriptions/crypto.py); never the password itself.
    basic_auth_password_encrypted = models.TextField(blank=True, editable=False)
    # Every custom header, name: value, except that a secret one's value is SECRET_MASK
    # here and its real value is in custom_headers_encrypted (selectors.subscription_custom_headers
    # gives them all).
    custom_headers = models.JSONField(
        _("custom headers"),
        default=dict,
        blank=True,
        help_text=_("Extra request headers, as name: value."),
    )
    secret_headers = models.JSONField(
        _("secret headers"),
        default=list,
        blank=True,
        help_text=_(
            "Names of custom headers whose values are secret. Headers named like a credential "
            "(Authorization-like, token, key, secret, password, signature, ...) are secret anyway."
        ),
    )
    # Fernet ciphertext of {name: value} of the secret custom headers (subscriptions/crypto.py).
    custom_headers_encrypted = models.TextField(blank=True, editable=False)
    sign_ed25519 = models.BooleanField(
        _("asymmetric signature (v1a)"),
        default=False,
        help_text=_("Also sign with the platform's Ed25519 key, verifiable with its public key."),
    )
    max_concurrency = models.PositiveSmallIntegerField(
        _("concurrent deliveries"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONCURRENCY)],
        help_text=_(
            "At most this many requests to this webhook at once. Empty: the platform's default."
        ),
    )
    rate_limit_per_second = models.PositiveIntegerField(
        _("deliveries per second"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RATE_PER_SECOND)],
        help_text=_("At most this many deliveries per second to this webhook. Empty: no limit."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    disabled_reason = models.TextField(_("why it is disabled"), blank=True)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True)
    # Start of the current run of failed attempts; cleared by the next success.
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    # Paused by the school (deliveries/services/pausing.py): still active, its deliveries are
    # created and held until it resumes, by hand or at resume_at. Not "disabled" (is_active).
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True, editable=False)
    resume_at = models.DateTimeField(
        _("resumes automatically at"), null=True, blank=True, editable=False
    )
    # Since it resumed, while the deliveries it held go out one at a time, oldest first.
    catching_up_since = models.DateTimeField(
        _("catching up since"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["school", "name"]
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
        permissions = [
            ("send_test_subscription", "Can send a test delivery to a webhook"),
            ("manage_secret_subscription", "Can see and rotate a webhook's signing secret"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["school", "name"], name="subscription_name_per_school"),
            models.CheckConstraint(
                condition=Q(profile__in=Profile.values), name="subscription_profile_known"
            ),
            # A vendor profile sends the vendor's body: no template, and the vendor's content type.
            models.CheckConstraint(
                condition=Q(profile=Profile.STANDARD) | Q(body_template=""),
                name="subscription_vendor_profile_no_template",
            ),
            models.CheckConstraint(
                condition=~Q(profile__in=JSON_ONLY_PROFILES, content_type=ContentType.XML),
                name="subscription_vendor_profile_content_type",
            ),
            models.CheckConstraint(
                condition=Q(resume_at__isnull=True) | Q(paused_at__isnull=False),
                name="subscription_resume_only_when_paused",
            ),
            models.CheckConstraint(
                condition=Q(paused_at__isnull=True) | Q(catching_up_since__isnull=True),
                name="subscription_paused_or_catching_up",
            ),
        ]
        indexes = [
            models.Index(fields=["school", "is_active"], name="subscription_school_active_idx"),
            models.Index(
                fields=["failing_since"],
                condition=Q(is_active=True, failing_since__isnull=False),
                name="subscription_failing_idx",
            ),
            # The sweeper's: webhooks to resume, and catch-ups to drive.
            models.Index(
                fields=["paused_at"],
                condition=Q(paused_at__isnull=False),
                name="subscription_paused_idx",
            ),
            models.Index(
                fields=["catching_up_since"],
                condition=Q(catching_up_since__isnull=False),
                name="subscription_catching_up_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, event_type: str) -> bool:
        """Whether the webhook receives the event type: a topic matches it and, under a vendor
        profile, the vendor has it (``course.*`` means the vendor's course events)."""
        return topic_matches(self.topics, event_type) and profile_get(self.profile).has(event_type)


class SigningSecret(models.Model):
    """A ``whsec_`` secret of a subscription, encrypted. Every secret that has not expired signs:
    after a rotation the old one keeps signing until ``expires_at``, so receivers can switch."""

    subscription = models.ForeignKey(
        Subscription,
        verbose_name=_("webhook"),
        on_delete=models.CASCADE,
        related_name="signing_secrets",
    )
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)

    class Meta:
        ordering = ["subscription", "-created_at"]
        verbose_name = _("signing secret")
        verbose_name_plural = _("signing secrets")
        indexes = [
            models.Index(fields=["subscription", "-created_at"], name="signing_secret_sub_idx"),
        ]

    def __str__(self) -> str:
        return f"Signing secret of {self.subscription_id} from {self.created_at:%Y-%m-%d %H:%M}"
