"""The tenant: a school, with the time zone and language its webhooks are rendered in."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.timezone import now


@lru_cache(maxsize=1)
def available_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in available_time_zones():
        raise ValidationError(
            "%(value)s is not an IANA time zone name (for example Europe/Paris or UTC).",
            code="invalid_time_zone",
            params={"value": value},
        )


validate_language = RegexValidator(
    regex=re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"),
    message="Use a language code such as en, fr or pt-BR.",
    code="invalid_language",
)


class School(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone; every date in this school's webhooks is rendered in it.",
    )
    language = models.CharField(
        max_length=16,
        default="en",
        validators=[validate_language],
        help_text="Sent to receivers in the X-Webhook-Lang header.",
    )
    daily_event_time = models.TimeField(
        null=True,
        blank=True,
        help_text=(
            "Local time, in this school's time zone, of the daily cron.midnight event; "
            "empty: 00:07 UTC."
        ),
    )
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)
