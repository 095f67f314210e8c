"""The event-type catalog shipped with the product: every event of the four seed platforms.

Loaded into the EventType table by data migrations through ``event_types_sync()``, so a fresh
install has it and an upgrade updates it. Each entry's sample payload validates against its
schema (``tests/events/test_catalog.py`` walks them all), and
``webhook_engine.vendors.SEED_EVENT_NAMES`` maps every vendor's event name to one key.

Naming rules for keys (``<resource>.<past_tense_verb>``, lowercase, ``snake_case`` parts):

- The resource is the thing the event is about, singular: ``course``, ``live_class``,
  ``absence_request``. The verb says what happened to it, in the past tense.
- Vendors' synonyms become one verb: added/created/signup -> ``created``; edited/changed/
  modified -> ``updated``; unremoved -> ``restored``; sign -> ``signed``; start/end ->
  ``started``/``ended``. Where two vendors name the same thing, it is one key.
- A vendor's sub-type (eduMe's ``course.updated`` + ``title.changed``) is never a key of its own:
  it is the ``subtype`` field of the data, listed by the schema.
- ``cron.midnight`` keeps Edusign's name: it is a clock tick, not something done to a resource.

Changing this catalog? Add a migration that calls ``event_types_sync`` (copy the latest one in
``events/migrations``) and run ``python manage.py event_catalog_docs``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import commerce, courses, learning, live, people, school_life

EVENT_TYPES: list[dict[str, Any]] = sorted(
    [
        *courses.EVENT_TYPES,
        *learning.EVENT_TYPES,
        *live.EVENT_TYPES,
        *people.EVENT_TYPES,
        *school_life.EVENT_TYPES,
        *commerce.EVENT_TYPES,
    ],
    key=lambda entry: (entry["group"], entry["key"]),
)


def catalog_fingerprint(entries: list[dict[str, Any]] = EVENT_TYPES) -> str:
    """A short hash of the catalog's content.

    The latest migration that syncs the catalog records it (``CATALOG_FINGERPRINT``); a test
    compares, so a change to the catalog cannot ship without the migration that loads it.
    """
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
