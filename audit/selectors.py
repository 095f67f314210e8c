"""Reads of the audit trail."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import AuditEntry


def audit_entries_for(*, object_type: str, object_id: object) -> QuerySet[AuditEntry]:
    """The entries about one object, newest first (on the (object_type, object_id) index)."""
    return AuditEntry.objects.filter(object_type=object_type, object_id=str(object_id)).order_by(
        "-created_at", "-id"
    )
