"""The per-process lookups cache keeps objects, not pickles, and still expires and forgets."""

import time

from django.core.cache import caches

from common.cache import ObjectCache


def test_the_lookups_cache_hands_back_the_object_it_was_given_until_it_expires():
    lookups = caches["lookups"]
    assert isinstance(lookups, ObjectCache)
    kept = {"schema": {"type": "object"}}

    lookups.set("kept", kept)
    lookups.set("brief", kept, timeout=0.05)

    assert lookups.get("kept") is kept  # no copy: a hit costs no unpickling
    assert lookups.add("kept", "other") is False
    time.sleep(0.1)
    assert lookups.get("brief", "gone") == "gone"
    assert lookups.add("brief", "again") is True
    lookups.delete("kept")
    assert lookups.get("kept") is None
    lookups.set("count", 1)
    assert lookups.incr("count", 2) == 3
    lookups.clear()
    assert lookups.get("count") is None
