"""The event-type catalog: keeping the EventType table equal to the shipped catalog."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.cache import caches
from django.db import models

from ..catalog import EVENT_TYPES
from ..models import EventType


def event_types_sync(
    *, entries: Iterable[dict[str, Any]] = EVENT_TYPES, model: type[models.Model] = EventType
) -> int:
    """Make the EventType table hold the shipped catalog; return how many types were written.

    Creates the catalog's types and updates those that changed (they are marked ``shipped``).
    A shipped type that is no longer in the catalog is marked deprecated, never deleted: events
    and subscriptions that use it keep working. Types added by operators in the admin are left
    alone, unless the catalog now ships the same key, which then takes it over. Events,
    subscriptions and other school data are not touched.

    Idempotent, and a no-op when nothing changed. ``model`` lets a data migration pass its
    historical model: only the fields that model has are written.
    """
    manager = model._default_manager  # type: ignore[attr-defined]
    fields = {field.name for field in model._meta.get_fields()} - {"key"}
    has_shipped = "shipped" in fields
    existing = {row.pk: row for row in manager.all()}
    to_create, to_update, changed_fields = [], [], set()
    keys = set()
    for entry in entries:
        keys.add(entry["key"])
        values = {name: value for name, value in entry.items() if name in fields}
        if has_shipped:
            values["shipped"] = True
        row = existing.get(entry["key"])
        if row is None:
            to_create.append(model(key=entry["key"], **values))
            continue
        differing = {name for name, value in values.items() if getattr(row, name) != value}
        if differing:
            for name in differing:
                setattr(row, name, values[name])
            to_update.append(row)
            changed_fields |= differing
    manager.bulk_create(to_create)
    if to_update:
        manager.bulk_update(to_update, sorted(changed_fields))
    if has_shipped:
        retired = manager.filter(shipped=True, deprecated=False).exclude(key__in=keys)
        retired.update(deprecated=True)
    # Bulk writes send no signals: drop this process's copies of the types in one go.
    caches["lookups"].clear()
    return len(to_create) + len(to_update)
