"""Writes of the schools app: schools and the credentials of API clients and of the platform."""

from __future__ import annotations

import hashlib
import secrets
import string

from django.apps import apps as global_apps
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import Actor, audit_record

from .models import (
    SCHOOL_ADMINS_GROUP,
    SUPPORT_GROUP,
    ApiKey,
    Membership,
    PlatformKey,
    Role,
    School,
)

SCHOOL_KEY_PREFIX = "whk_"
PLATFORM_KEY_PREFIX = "whp_"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def key_hash(key: str) -> str:
    """The SHA-256 of a key, as stored (keys are 192 random bits: no slow hash is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _key_generate(kind: str) -> tuple[str, str]:
    """A new key and its stored prefix: ``whk_`` + 8 lookup characters + 32 secret ones."""
    lookup = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    return f"{kind}{lookup}{secrets.token_urlsafe(24)}", f"{kind}{lookup}"


def school_create(
    *, slug: str, name: str, timezone_name: str = "UTC", language: str = "en"
) -> School:
    """Validate and create a school. Raises ``ValidationError`` with a field map (``slug`` taken,
    an unknown time zone, a malformed language code, ...)."""
    school = School(slug=slug, name=name, timezone=timezone_name, language=language)
    school.full_clean()
    school.save()
    return school


@transaction.atomic
def api_key_create(*, school: School, name: str, actor: Actor | None = None) -> tuple[ApiKey, str]:
    """Create an API key for the school; return it and the key itself, which is never shown again.

    A school has at most ``WEBHOOKS_API_KEYS_PER_SCHOOL`` (5) active keys: raises
    ``ValidationError`` for one more, or for an empty name.
    """
    name = name.strip()
    if not name:
        raise ValidationError(
            {"name": [_("Give the key a name, such as the integration using it.")]}
        )
    _key_name_check(ApiKey, name)
    School.objects.select_for_update().get(pk=school.pk)  # one creation at a time per school
    limit = settings.WEBHOOKS_API_KEYS_PER_SCHOOL
    if ApiKey.objects.filter(school=school, revoked_at__isnull=True).count() >= limit:
        raise ValidationError(
            {
                "__all__": [
                    _("%(school)s already has %(limit)s active API keys; revoke one first.")
                    % {"school": school.name, "limit": limit}
                ]
            }
        )
    key, prefix = _key_generate(SCHOOL_KEY_PREFIX)
    api_key = ApiKey.objects.create(school=school, name=name, prefix=prefix, key_hash=key_hash(key))
    _api_key_audit(api_key, AuditAction.API_KEY_CREATED, actor)
    return api_key, key


def _key_name_check(model: type[ApiKey] | type[PlatformKey], name: str) -> None:
    """The name's length, which the column limits: refused with the field's message rather
    than by the database."""
    try:
        model._meta.get_field("name").run_validators(name)
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from None


def api_key_revoke(*, api_key: ApiKey, actor: Actor | None = None) -> None:
    """Revoke a key at once; idempotent (the audit trail records the first revocation)."""
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    api_key.refresh_from_db(fields=["revoked_at"])
    if revoked:
        _api_key_audit(api_key, AuditAction.API_KEY_REVOKED, actor)


def _api_key_audit(api_key: ApiKey, action: AuditAction, actor: Actor | None) -> None:
    audit_record(
        actor=actor,
        action=action,
        school_id=api_key.school_id,
        object_type="api_key",
        object_id=api_key.pk,
        object_repr=f"{api_key.name} ({api_key.prefix}…)",
    )


def platform_key_create(*, name: str) -> tuple[PlatformKey, str]:
    """Create a platform key; return it and the key itself, which is never shown again."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": [_("Give the key a name, such as the service using it.")]})
    _key_name_check(PlatformKey, name)
    key, prefix = _key_generate(PLATFORM_KEY_PREFIX)
    return PlatformKey.objects.create(name=name, prefix=prefix, key_hash=key_hash(key)), key


def platform_key_revoke(*, platform_key: PlatformKey) -> None:
    """Revoke a platform key at once; idempotent."""
    PlatformKey.objects.filter(pk=platform_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    platform_key.refresh_from_db(fields=["revoked_at"])


def credential_touch(*, credential: ApiKey | PlatformKey) -> None:
    """Record that a key was used; written at most once a minute per key."""
    now = timezone.now()
    if credential.last_used_at and (now - credential.last_used_at).total_seconds() < 60:
        return
    type(credential).objects.filter(pk=credential.pk).update(last_used_at=now)
    credential.last_used_at = now


# What each staff group may do in the admin; which rows it sees is the admin's scoping
# (``schools.selectors.school_ids_visible_to``): a school admin sees their schools, support every
# school. Support inspects, tests and retriggers, but neither sees nor changes a webhook or a
# key: no ``manage_secret_subscription`` (signing secrets) and no API keys of its own (a school's
# API key can read the school's webhook secrets through the API).
ADMIN_GROUP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    SCHOOL_ADMINS_GROUP: (
        "schools.view_school",
        "schools.view_apikey",
        "schools.add_apikey",
        "schools.change_apikey",  # revoke
        "events.view_eventtype",
        "events.view_event",
        "events.view_scheduledevent",
        "subscriptions.view_subscription",
        "subscriptions.add_subscription",
        "subscriptions.change_subscription",
        "subscriptions.delete_subscription",
        "subscriptions.send_test_subscription",
        "subscriptions.manage_secret_subscription",
        "deliveries.view_delivery",
        "deliveries.view_deliveryattempt",
        "deliveries.retrigger_delivery",
        "audit.view_auditentry",  # their schools' entries
    ),
    SUPPORT_GROUP: (
        "schools.view_school",
        "schools.view_membership",
        "schools.view_apikey",
        "events.view_eventtype",
        "events.view_event",
        "events.view_scheduledevent",
        "events.change_scheduledevent",  # cancel
        "subscriptions.view_subscription",
        "subscriptions.send_test_subscription",
        "deliveries.view_delivery",
        "deliveries.view_deliveryattempt",
        "deliveries.retrigger_delivery",
        "audit.view_auditentry",
    ),
}


def admin_groups_sync() -> None:
    """Create the "School admins" and "Support" groups with exactly the permissions of
    ``ADMIN_GROUP_PERMISSIONS``; idempotent. Called by a migration (before Django's own
    post-migrate step has created the permissions, so it creates them first)."""
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    for name, codenames in ADMIN_GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permissions.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(permissions)


def school_admin_grant_check(*, user: User) -> None:
    """Raise ``ValidationError`` if ``user`` may not become a school admin (support staff)."""
    if user.groups.filter(name=SUPPORT_GROUP).exists():
        raise ValidationError(
            {
                "user": [
                    _("%(user)s is support staff; a school admin must be another account.")
                    % {"user": user}
                ]
            }
        )


def support_staff_grant_check(*, user: User) -> None:
    """Raise ``ValidationError`` if ``user`` may not become support staff (a school admin)."""
    if user.pk is not None and Membership.objects.filter(user=user).exists():
        raise ValidationError(
            {
                "user": [
                    _("%(user)s administers a school; support staff must be another account.")
                    % {"user": user}
                ]
            }
        )


@transaction.atomic
def school_admin_revoke(*, membership: Membership) -> None:
    """End a user's admin role at one school; after their last school they leave the "School
    admins" group too (their staff status stays, with nothing left to see)."""
    user = membership.user
    membership.delete()
    if not Membership.objects.filter(user=user).exists():
        user.groups.remove(Group.objects.get(name=SCHOOL_ADMINS_GROUP))


@transaction.atomic
def school_admin_grant(*, user: User, school: School) -> Membership:
    """Make ``user`` an admin of ``school``: a staff user in the "School admins" group with a
    membership of the school (they then get its failure e-mails too). Idempotent.

    Raises ``ValidationError`` for support staff: someone who sees every school must not also
    hold the rights of a school admin there (keys, secrets).
    """
    school_admin_grant_check(user=user)
    group = Group.objects.get(name=SCHOOL_ADMINS_GROUP)
    type(user)._default_manager.filter(pk=user.pk).update(is_staff=True)
    user.is_staff = True
    user.groups.add(group)
    membership, _ = Membership.objects.get_or_create(
        user=user, school=school, defaults={"role": Role.ADMIN}
    )
    return membership


@transaction.atomic
def support_staff_grant(*, user: User) -> None:
    """Make ``user`` platform support staff: a staff user in the "Support" group, who sees every
    school in the admin. Idempotent.

    Raises ``ValidationError`` for a school admin (see ``school_admin_grant``).
    """
    support_staff_grant_check(user=user)
    group = Group.objects.get(name=SUPPORT_GROUP)
    type(user)._default_manager.filter(pk=user.pk).update(is_staff=True)
    user.is_staff = True
    user.groups.add(group)
