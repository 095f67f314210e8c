"""Keep this process's cached event types in step with the table."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import EventType


@receiver([post_save, post_delete], sender=EventType)
def event_type_lookup_drop(sender: type[EventType], instance: EventType, **kwargs: Any) -> None:
    cache_key = f"event-type:{instance.key}"
    caches["lookups"].delete(cache_key)
    # Again after commit: a request between the save and the commit may have cached the old row.
    transaction.on_commit(lambda: caches["lookups"].delete(cache_key))
