"""The tenant: a school, with the time zone and language its webhooks are rendered in."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.timezone import now
from django.utils.translation import gettext_lazy as _


@lru_cache(maxsize=1)
def available_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in available_time_zones():
        raise ValidationError(
            _("%(value)s is not an IANA time zone name (for example Europe/Paris or UTC)."),
            code="invalid_time_zone",
            params={"value": value},
        )


validate_language = RegexValidator(
    regex=re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"),
    message=_("Use a language code such as en, fr or pt-BR."),
    code="invalid_language",
)


class School(models.Model):
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text=_("IANA time zone; every date in this school's webhooks is rendered in it."),
    )
    language = models.CharField(
        _("language"),
        max_length=16,
        default="en",
        validators=[validate_language],
        help_text=_("Sent to receivers in the X-Webhook-Lang header."),
    )
    daily_event_time = models.TimeField(
        _("daily event time"),
        null=True,
        blank=True,
        help_text=_(
            "Local time, in this school's time zone, of the daily cron.midnight event; "
            "empty: 00:07 UTC."
        ),
    )
    created_at = models.DateTimeField(_("created"), default=now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("school")
        verbose_name_plural = _("schools")

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Role(models.TextChoices):
    ADMIN = "admin", _("School admin")


# The admin's two kinds of staff users (groups created by a migration, see
# ``services.admin_groups_sync``): a school admin also needs a Membership of each school, support
# staff see every school.
SCHOOL_ADMINS_GROUP = "School admins"
SUPPORT_GROUP = "Support"


class Membership(models.Model):
    """A user who administers a school: sees and manages its webhooks, is told when they fail."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="school_memberships",
        verbose_name=_("user"),
    )
    school = models.ForeignKey(
        School, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("school")
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.ADMIN)
    created_at = models.DateTimeField(_("created"), default=now, editable=False)

    class Meta:
        verbose_name = _("school admin")
        verbose_name_plural = _("school admins")
        constraints = [
            models.UniqueConstraint(fields=["user", "school"], name="membership_user_school"),
        ]

    def __str__(self) -> str:
        return _("%(user)s (%(role)s of %(school)s)") % {
            "user": self.user,
            "role": self.get_role_display(),
            "school": self.school,
        }


class ApiKey(models.Model):
    """A credential of a school's API clients: ``Authorization: Bearer whk_...``.

    Only a hash of the key is stored; the key itself is shown once, when it is created. The
    prefix (the first characters) is kept to tell keys apart and to find a key quickly.
    """

    school = models.ForeignKey(
        School, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("school")
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), default=now, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["school", "-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        indexes = [
            models.Index(
                fields=["school"],
                condition=models.Q(revoked_at__isnull=True),
                name="api_key_active_per_school_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PlatformKey(models.Model):
    """A credential of the platform's own services (``whp_...``): publishes events for any school.
    Stored like ``ApiKey``: a hash and a visible prefix."""

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), default=now, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("platform key")
        verbose_name_plural = _("platform keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
