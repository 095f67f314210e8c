"""What a value must be for the engine to carry it: the rules every way in applies to input.

The API's JSON parser, its query-string and form checks, the admin's filters and
``event_publish`` all refuse the same things with the same words, before anything reaches the
database or a template:

- text PostgreSQL cannot store (NUL, U+0000) or that is not Unicode at all (a lone surrogate such
  as U+D800, which a JSON ``\\ud800`` escape produces and no encoder accepts);
- JSON nested deeper than ``MAX_JSON_DEPTH`` (Python's parser, ``jsonb``, the XML writer and the
  template engine all recurse), and numbers JSON cannot write (``1e400`` parses as infinity);
- datetimes that cannot be shown in every school's time zone: a UTC offset beyond
  ``MAX_UTC_OFFSET`` or an instant so close to year 1 or year 9999 that moving it into a zone
  leaves the calendar (``OverflowError`` at delivery time).

Pure functions over plain values. Each problem is a whole sentence whose subject the caller
names (a path such as ``data.course.id``, or words such as "The key"), in the language active
when it is made: the reader's in the admin and the API.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext as _

from .envelope import aware_datetime_parse

# Deep enough for any real payload (the catalog's deepest sample has 4 levels).
MAX_JSON_DEPTH = 32
# Real time zones lie between UTC-12:00 and UTC+14:00; an offset past either is a typo or a probe.
MAX_UTC_OFFSET = dt.timedelta(hours=14)
# Every instant in this range can be written in every zone (one day of margin either side).
DATETIME_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
DATETIME_MAX = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)
# Problems reported at most per value: enough to act on, never a flood.
MAX_PROBLEMS = 10


def _text_issue(value: str) -> str | None:
    """``"nul"`` or the code point (``U+D800``) of a lone surrogate, or None."""
    if "\x00" in value:
        return "nul"
    for char in value:
        if "\ud800" <= char <= "\udfff":
            return f"U+{ord(char):04X}"
    return None


def text_storable(value: str) -> bool:
    """Whether ``value`` can be stored as text (``text_problem`` says why not): a check that
    costs no sentence when it can."""
    return _text_issue(value) is None


def text_problem(value: str, *, subject: str) -> str | None:
    """Why ``value`` cannot be stored as text, as a sentence about ``subject``, or None: a NUL
    character or a lone surrogate."""
    issue = _text_issue(value)
    if issue is None:
        return None
    if issue == "nul":
        return _("%(subject)s contains a NUL character (U+0000), which cannot be stored.") % {
            "subject": subject
        }
    return _(
        "%(subject)s contains an unpaired surrogate (%(code)s), which is not valid Unicode."
    ) % {"subject": subject, "code": issue}


def _key_problem(key: str, subject: str) -> str:
    issue = _text_issue(key)
    if issue == "nul":
        return _(
            "%(subject)s has a key that contains a NUL character (U+0000), which cannot be stored."
        ) % {"subject": subject}
    return _(
        "%(subject)s has a key that contains an unpaired surrogate (%(code)s), which is not "
        "valid Unicode."
    ) % {"subject": subject, "code": issue}


def printable(value: str, limit: int = 60) -> str:
    """``value`` for a message: control and surrogate characters escaped, long text cut."""
    out = []
    for char in value[:limit]:
        code = ord(char)
        if code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF or 0x80 <= code < 0xA0:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out) + ("…" if len(value) > limit else "")


def _key_path(path: str, key: str) -> str:
    shown = printable(key, 40)
    simple = shown and all(char.isalnum() or char in "_-" for char in shown)
    step = f".{shown}" if simple else f'["{shown}"]'
    return f"{path}{step}" if path else shown


def place_path(place: Any, *, key_step: Callable[[str, str], str] | None = None) -> str:
    """The path of a place in a walk of JSON that writes paths out only when it needs one: a
    path, or (the parent's place, a key or an index). An index reads ``[2]``; a key as
    ``key_step(path, key)`` says, by default ``.id`` or ``["odd key"]``."""
    key_step = key_step or _key_path
    steps: list[str | int] = []
    while isinstance(place, tuple):
        place, step = place
        steps.append(step)
    path: str = place
    for step in reversed(steps):
        path = f"{path}[{step}]" if isinstance(step, int) else key_step(path, step)
    return path


def _subject(path: str) -> str:
    """A path as the subject of a sentence: the value itself is "The body"."""
    return _short(path) or _("The body")


def _short(path: str) -> str:
    return path if len(path) <= 120 else path[:117] + "…"


def json_problems(
    value: Any,
    *,
    path: str = "",
    max_depth: int = MAX_JSON_DEPTH,
    datetimes: bool = False,
) -> list[tuple[str, str]]:
    """Every reason (up to ``MAX_PROBLEMS``) a parsed JSON value cannot be carried, as
    ``(path, sentence)``, the sentence's subject the path (or "The body" for the root): text
    that cannot be stored (in keys and values), nesting deeper than ``max_depth``, numbers that
    are not finite and, with ``datetimes``, ISO-8601 datetimes with an offset (the ones
    deliveries move into the school's zone) that ``datetime_problem`` refuses.

    ``path`` names the value itself (``data``); nested paths read ``data.course.id`` and
    ``data.items[2]``. Walks with an explicit stack, so any depth is safe to inspect.
    """
    problems: list[tuple[str, str]] = []
    # A value's place: its path, or (its parent's place, its key or index), the path written
    # out only for a value with a problem (``place_path``).
    stack: list[tuple[Any, Any, int]] = [(value, path, 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, place, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                where = place_path(place)
                problems.append(
                    (
                        _short(where),
                        _("%(subject)s is nested more than %(limit)s levels deep; flatten it.")
                        % {"subject": _subject(where), "limit": max_depth},
                    )
                )
                continue
            children: list[tuple[Any, Any, int]]
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str) and _text_issue(key):
                        where = place_path(place)
                        problems.append((_short(where), _key_problem(key, _subject(where))))
                children = [(child, (place, str(key)), depth + 1) for key, child in item.items()]
            else:
                children = [(child, (place, index), depth + 1) for index, child in enumerate(item)]
            # Reversed onto the stack, so problems come out in document order.
            children.reverse()
            stack.extend(children)
        elif isinstance(item, str):
            problem = None
            if _text_issue(item):
                problem = text_problem(item, subject=_subject(place_path(place)))
            if problem is None and datetimes:
                parsed = aware_datetime_parse(item)
                if parsed is not None and datetime_problem(parsed, subject=""):
                    problem = datetime_problem(parsed, subject=_subject(place_path(place)))
            if problem:
                problems.append((_short(place_path(place)), problem))
        elif isinstance(item, float) and not math.isfinite(item):
            where = place_path(place)
            problems.append(
                (
                    _short(where),
                    _("%(subject)s is %(value)s, which JSON cannot represent.")
                    % {"subject": _subject(where), "value": item},
                )
            )
    return problems[:MAX_PROBLEMS]


def datetime_problem(value: dt.datetime, *, subject: str) -> str | None:
    """Why an aware datetime cannot be shown in every school's zone, as a sentence about
    ``subject``, or None (naive: None; the caller decides what a naive value means)."""
    offset = value.utcoffset()
    if offset is None:
        return None
    if abs(offset) > MAX_UTC_OFFSET:
        sign = "-" if offset < dt.timedelta(0) else "+"
        minutes = int(abs(offset).total_seconds() // 60)
        return _(
            "%(subject)s has the UTC offset %(offset)s; the offsets of time zones lie within "
            "±14:00."
        ) % {"subject": subject, "offset": f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"}
    try:
        utc = value.replace(tzinfo=None) - offset
    except OverflowError:
        utc = None
    if utc is None or not DATETIME_MIN <= utc.replace(tzinfo=dt.UTC) <= DATETIME_MAX:
        return _(
            "%(subject)s is outside the dates every time zone can show (%(first)s to %(last)s UTC)."
        ) % {"subject": subject, "first": _day(DATETIME_MIN), "last": _day(DATETIME_MAX)}
    return None


def _day(value: dt.datetime) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def query_problems(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(name, message)`` for each query-string or form parameter (name or value) that holds
    text that cannot be stored."""
    problems = []
    for name, value in pairs:
        if problem := text_problem(name, subject=_("The parameter's name")):
            problems.append((printable(name, 40), problem))
        elif problem := text_problem(value, subject=_("The value")):
            problems.append((name, problem))
    return problems[:MAX_PROBLEMS]
