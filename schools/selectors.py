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


def school_ids_visible_to(*, user: object) -> list[int] | None:
    """The schools a user may see: ``None`` for all (superusers), else their memberships."""
    if getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False):
        return []
    return list(Membership.objects.filter(user=user).values_list("school_id", flat=True))
