"""Reads of the schools app."""

from __future__ import annotations

import hmac
import re
from typing import Any

from django.core.cache import caches

from .models import SUPPORT_GROUP, ApiKey, Membership, PlatformKey, Role, School

SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def school_by_slug(slug: str) -> School | None:
    """The school with this slug, or None; the API's ingest reads it on every event.

    Kept per process for ``WEBHOOKS_LOOKUP_CACHE_SECONDS`` (saving or deleting a school drops
    this process's copy at once, ``schools.signals``); unknown slugs are not kept. Another
    process's change shows only then: what is stored for "the school with this slug" names it
    by the slug (``event_publish_or_get``'s ``school_slug``), not by this copy's id.
    """
    if not SLUG.fullmatch(slug):
        return None  # not a slug a school can have
    lookups = caches["lookups"]
    cache_key = f"school:{slug}"
    school = lookups.get(cache_key)
    if school is None:
        school = School.objects.filter(slug=slug).first()
        if school is not None:
            lookups.set(cache_key, school)
    return school


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


def school_ids_visible_to(*, user: Any) -> list[int] | None:
    """The schools a user may see: ``None`` for all (superusers and the support group), else
    the schools they are a member of (none for anyone else)."""
    if getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return []
    if user.groups.filter(name=SUPPORT_GROUP).exists():
        return None
    return list(Membership.objects.filter(user=user).values_list("school_id", flat=True))


def credential_find(*, key: str) -> ApiKey | PlatformKey | None:
    """The active school or platform key matching ``key`` exactly, or None."""
    from .services import PLATFORM_KEY_PREFIX, SCHOOL_KEY_PREFIX, key_hash

    model: type[ApiKey] | type[PlatformKey]
    if len(key) > 200 or "\x00" in key:
        return None  # no key is that long, and PostgreSQL could not even compare it
    if key.startswith(SCHOOL_KEY_PREFIX):
        model = ApiKey
    elif key.startswith(PLATFORM_KEY_PREFIX):
        model = PlatformKey
    else:
        return None
    prefix = key[:12]
    candidate = model.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if candidate is None or not hmac.compare_digest(candidate.key_hash, key_hash(key)):
        return None
    if isinstance(candidate, ApiKey):
        candidate = ApiKey.objects.select_related("school").get(pk=candidate.pk)
    return candidate


def api_keys_active_count(*, school: School) -> int:
    """How many API keys of the school are not revoked."""
    return ApiKey.objects.filter(school=school, revoked_at__isnull=True).count()


def school_ids_administered_by(*, user: Any) -> list[int] | None:
    """The schools whose secrets and keys a user may manage: ``None`` for all (superusers), else
    the schools they are an admin of. Seeing a school (support staff see them all) is not enough.
    """
    if getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return []
    return list(
        Membership.objects.filter(user=user, role=Role.ADMIN).values_list("school_id", flat=True)
    )
