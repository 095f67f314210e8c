"""The audit trail: who did which sensitive thing to which object, when, and what changed.

Written by the services that make the change (never by signals), in the same transaction. An
entry never holds a secret value: a changed password or header value is recorded as changed,
not as its value.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from common.admin_display import datetime_text


class AuditAction(models.TextChoices):
    WEBHOOK_CREATED = "webhook.created", _("Webhook created")
    WEBHOOK_CHANGED = "webhook.changed", _("Webhook changed")
    WEBHOOK_DELETED = "webhook.deleted", _("Webhook deleted")
    WEBHOOK_DISABLED = "webhook.disabled", _("Webhook disabled")
    WEBHOOK_ENABLED = "webhook.enabled", _("Webhook re-enabled")
    WEBHOOK_PAUSED = "webhook.paused", _("Webhook paused")
    WEBHOOK_RESUMED = "webhook.resumed", _("Webhook resumed")
    SECRET_REVEALED = "secret.revealed", _("Signing secret revealed")
    SECRET_ROTATED = "secret.rotated", _("Signing secret rotated")
    DELIVERY_RETRIGGERED = "delivery.retriggered", _("Delivery sent again")
    DELIVERIES_RECOVERED = "deliveries.recovered", _("Failed deliveries recovered")
    DELIVERIES_REPLAYED = "deliveries.replayed", _("Events replayed")
    API_KEY_CREATED = "api_key.created", _("API key created")
    API_KEY_REVOKED = "api_key.revoked", _("API key revoked")


class AuditEntry(models.Model):
    """One sensitive action. ``actor`` is the person (kept as ``actor_label`` if the account goes
    away); an API client or the system itself has no user, only the label."""

    created_at = models.DateTimeField(_("when"), default=timezone.now, editable=False)
    school = models.ForeignKey(
        "schools.School",
        verbose_name=_("school"),
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(_("who"), max_length=200)
    action = models.CharField(_("action"), max_length=40, choices=AuditAction.choices)
    object_type = models.CharField(_("object type"), max_length=40)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=300)
    changes = models.JSONField(_("what changed"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at"], name="audit_created_idx"),
            models.Index(fields=["school", "-created_at"], name="audit_school_created_idx"),
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        # The action as people read it, in their language (the breadcrumbs, the page's title),
        # its time as every admin page shows times: in the school's zone, named.
        action = self.get_action_display()
        zone = self.school.timezone if self.school is not None else None
        return _("%(when)s %(who)s: %(action)s") % {
            "when": datetime_text(self.created_at, zone),
            "who": self.actor_label,
            "action": action,
        }
