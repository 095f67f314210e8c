"""Who wants what: a school's webhook subscriptions."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from .topics import topic_matches


class ContentType(models.TextChoices):
    JSON = "json", "JSON"
    XML = "xml", "XML"


class Subscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey(
        "schools.School", on_delete=models.CASCADE, related_name="subscriptions"
    )
    name = models.CharField(max_length=200)
    url = models.URLField("URL", max_length=2000)
    topics = models.JSONField(
        default=list, help_text="Event types or glob patterns such as course.* or *."
    )
    content_type = models.CharField(
        max_length=8, choices=ContentType.choices, default=ContentType.JSON
    )
    is_active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    signing_secret = models.CharField(max_length=200, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["school", "name"]
        constraints = [
            models.UniqueConstraint(fields=["school", "name"], name="subscription_name_per_school"),
        ]
        indexes = [
            models.Index(fields=["school", "is_active"], name="subscription_school_active_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, event_type: str) -> bool:
        return topic_matches(self.topics, event_type)
