"""Topic patterns: globs over dotted event-type keys (``course.created``, ``course.*``, ``*``).

Pure functions, no database access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

from django.utils.translation import gettext as _

_PATTERN_CHARACTERS = re.compile(r"^[a-z0-9_.*?\[\]!-]+$")
MAX_TOPIC_CHARACTERS = 100  # as the API's


def is_pattern(topic: str) -> bool:
    """Whether a topic is a wildcard pattern rather than one event type."""
    return any(char in topic for char in "*?[")


def topic_matches(patterns: Iterable[str], event_type: str) -> bool:
    """True if any glob pattern matches the event type (case-sensitive, ``*`` spans dots)."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def topic_pattern_errors(patterns: object, known_types: Iterable[str]) -> list[str]:
    """Messages for every pattern that is malformed or matches no known event type."""
    if not isinstance(patterns, list) or not patterns:
        return [_("Choose at least one topic.")]
    known = list(known_types)
    errors = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            errors.append(_("A topic cannot be empty."))
        elif len(pattern) > MAX_TOPIC_CHARACTERS:
            errors.append(
                _("A topic has at most %(limit)s characters; this one has %(count)s.")
                % {"limit": MAX_TOPIC_CHARACTERS, "count": len(pattern)}
            )
        elif not _PATTERN_CHARACTERS.match(pattern):
            errors.append(
                _(
                    "%(pattern)r is not a topic pattern: use lowercase event keys such as "
                    "course.created, or wildcards such as course.*."
                )
                % {"pattern": pattern}
            )
        elif not any(fnmatchcase(key, pattern) for key in known):
            errors.append(
                _("%(pattern)r matches no event type in the catalog.") % {"pattern": pattern}
            )
    if len(set(patterns)) != len(patterns):
        errors.append(_("Each topic can be listed only once."))
    return errors
