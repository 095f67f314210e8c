"""Reads of the schools app."""

from __future__ import annotations

from .models import Membership, Role, School


def school_admin_emails(*, school: School) -> list[str]:
    """E-mail addresses of the school's active admins, sorted, without duplicates."""
    emails = (
        Membership.objects.filter(
            school=school, role=Role.ADMIN, user__is_active=True, user__email__gt=""
        )
        .values_list("user__email", flat=True)
        .distinct()
    )
    return sorted(emails)
