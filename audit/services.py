"""Writes of the audit trail (see ``models.py``). Every function is called by the service that
makes the change, inside its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import AuditAction, AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who acts: a person (``user_id``), an API client or the system (``label`` only)."""

    label: str
    user_id: int | None = None


SYSTEM = Actor(label="system")


def actor_user(user: Any) -> Actor:
    """The actor for a signed-in person."""
    return Actor(label=str(user.get_username()), user_id=user.pk)


def actor_api_key(key: Any) -> Actor:
    """The actor for a request made with a school's or the platform's API key."""
    return Actor(label=f"API key {key.name} ({key.prefix}…)")


def audit_record(
    *,
    actor: Actor | None,
    action: AuditAction,
    school_id: int | None,
    object_type: str,
    object_id: object,
    object_repr: str,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record one sensitive action and return the entry.

    ``changes`` maps a field to ``[before, after]`` (or any small JSON value); the caller never
    puts a secret value in it. ``actor`` None is the system (a scheduled job, the engine).
    """
    actor = actor or SYSTEM
    return AuditEntry.objects.create(
        school_id=school_id,
        actor_id=actor.user_id,
        actor_label=actor.label[:200],
        action=action,
        object_type=object_type,
        object_id=str(object_id or "")[:64],
        object_repr=object_repr[:300],
        changes=changes or {},
    )


def audit_record_many(
    *,
    actor: Actor | None,
    action: AuditAction,
    entries: list[tuple[int | None, str, object, str, dict[str, Any]]],
) -> None:
    """``audit_record`` for many objects at once: ``(school_id, object_type, object_id,
    object_repr, changes)`` each, written in INSERTs of a thousand (PostgreSQL takes at most
    65,535 parameters in one statement)."""
    actor = actor or SYSTEM
    AuditEntry.objects.bulk_create(
        [
            AuditEntry(
                school_id=school_id,
                actor_id=actor.user_id,
                actor_label=actor.label[:200],
                action=action,
                object_type=object_type,
                object_id=str(object_id)[:64],
                object_repr=object_repr[:300],
                changes=changes,
            )
            for school_id, object_type, object_id, object_repr, changes in entries
        ],
        batch_size=1000,
    )
