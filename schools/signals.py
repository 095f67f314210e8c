"""Keep this process's cached schools in step with the table."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import School


@receiver([post_save, post_delete], sender=School)
def school_lookup_drop(sender: type[School], instance: School, **kwargs: Any) -> None:
    # All of them: a renamed school is cached under its old slug too. Schools change rarely.
    caches["lookups"].clear()
    # Again after commit: a request between the save and the commit may have cached the old row.
    transaction.on_commit(caches["lookups"].clear)
