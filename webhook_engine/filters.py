"""Payload filters: which events of its types a webhook receives, decided on the event's data.

A filter is JSON, small enough to read and safe to run (no code, no regular expressions, a
bounded size). It is either one condition or a group::

    {"field": "group.id", "op": "eq", "value": 12}
    {"all": [{"field": "student.class", "op": "in", "value": ["5A", "5B"]},
             {"any": [{"field": "student.email", "op": "ends_with", "value": "@school.org"},
                      {"field": "student.external_id", "op": "exists"}]}]}

- ``field`` is a dotted path into the event's ``data`` (what the event carries, before any body
  template or vendor profile reshapes it): ``group.id``. A segment made of digits picks
  that element (from 0) of a list: ``course.instructors.0.id``. Nothing else: no wildcards, no
  expressions. A key that itself contains a dot cannot be named.
- ``op`` is one of ``OPERATORS``; ``value`` is what the field is compared with (see
  ``_VALUE_RULES``). ``exists`` takes ``true`` (the default) or ``false``.
- ``all`` holds when every member holds, ``any`` when at least one does; groups nest up to
  ``MAX_DEPTH`` levels and a filter has at most ``MAX_CONDITIONS`` conditions.
- A field the event does not have makes its comparison false, whatever the operator (``ne`` and
  ``not_in`` too); only ``exists`` speaks of absence. A value of another kind than the field's
  (a text compared with ``gt`` to a number) is false as well, never an error: filters run on every
  event and must not fail at fan-out.
- Equality is JSON's: ``12`` equals ``12.0`` but not ``"12"`` nor ``true``; text is compared
  exactly (case counts). ``gt``/``gte``/``lt``/``lte`` compare numbers with numbers and text with
  text (character by character, so ISO dates in one UTC offset compare in time order).
  ``contains`` is a substring of a text or an element of a list; ``starts_with`` and
  ``ends_with`` are for text.

Pure functions over plain values: ``filter_errors`` (every problem of the shape at once),
``filter_compile`` (a predicate over ``data``, built once and run per event),
``filter_schema_errors`` (the conditions no selected event type can satisfy, from their JSON
Schemas and samples) and ``filter_describe`` (the filter in plain words). Messages are made in
the active language, as the engine's other messages are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

MAX_DEPTH = 3  # levels of all/any groups
MAX_CONDITIONS = 20
MAX_PATH_SEGMENTS = 10
MAX_PATH_CHARACTERS = 200
MAX_LIST_VALUES = 100  # members of an in/not_in list
MAX_TEXT_CHARACTERS = 500  # a text value

OPERATORS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "starts_with",
    "ends_with",
    "exists",
)
GROUPS = ("all", "any")

Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Condition:
    """One comparison, as written (a path's segments already split)."""

    field: str
    path: tuple[str, ...]
    op: str
    value: Any


class FilterInvalid(ValueError):
    """A filter that ``filter_errors`` refuses; ``problems`` are its sentences."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- Reading a path -------------------------------------------------------------------------

_MISSING = object()


def path_split(field: str) -> tuple[str, ...]:
    """The segments of a dotted path (``"course.group.id"`` -> ``("course", "group", "id")``)."""
    return tuple(field.split("."))


def _is_index(segment: str) -> bool:
    """Whether a path segment picks a list element: ASCII digits only (``"²"`` is a digit to
    ``str.isdigit`` but no number to ``int``; it names a key like any other text)."""
    return segment.isascii() and segment.isdigit()


def path_get(data: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``data``, or ``_MISSING``: a segment names a key of an object,
    or, made of digits, an element of a list (from 0)."""
    value = data
    for segment in path:
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif isinstance(value, list) and _is_index(segment):
            index = int(segment)
            if index >= len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


# --- Checking the shape ---------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


def _value_problem(op: str, value: Any, has_value: bool) -> str | None:
    """Why ``value`` cannot go with ``op``, or None."""
    if op == "exists":
        if has_value and not isinstance(value, bool):
            return _("The value of exists must be true or false.")
        return None
    if not has_value:
        return _("A comparison needs a value.")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            return _("The value of in and not_in must be a non-empty list.")
        if len(value) > MAX_LIST_VALUES:
            return _("A list of values has at most %(limit)s members.") % {"limit": MAX_LIST_VALUES}
        if not all(_is_scalar(member) for member in value):
            return _("A list of values holds only text, numbers, true, false or null.")
        values = value
    elif op in ("gt", "gte", "lt", "lte"):
        if not (_is_number(value) or isinstance(value, str)):
            return _("An order comparison needs a number or a text.")
        values = [value]
    elif op in ("starts_with", "ends_with"):
        if not isinstance(value, str) or not value:
            return _("The value of starts_with and ends_with must be a non-empty text.")
        values = [value]
    else:  # eq, ne, contains
        if not _is_scalar(value):
            return _("The value must be a text, a number, true, false or null.")
        values = [value]
    for member in values:
        if isinstance(member, float) and not math.isfinite(member):
            return _("The value must be a finite number.")
        if isinstance(member, str) and len(member) > MAX_TEXT_CHARACTERS:
            return _("A text value has at most %(limit)s characters.") % {
                "limit": MAX_TEXT_CHARACTERS
            }
    return None


def _field_problem(field: Any) -> str | None:
    if not isinstance(field, str) or not field:
        return _("A condition needs a field: a dotted path such as course.name.")
    if len(field) > MAX_PATH_CHARACTERS:
        return _("A field path has at most %(limit)s characters.") % {"limit": MAX_PATH_CHARACTERS}
    path = path_split(field)
    if len(path) > MAX_PATH_SEGMENTS:
        return _("A field path has at most %(limit)s parts.") % {"limit": MAX_PATH_SEGMENTS}
    if any(not segment or segment != segment.strip() for segment in path):
        return _("%(field)s is not a dotted path such as course.name.") % {
            "field": json.dumps(field, ensure_ascii=False)
        }
    return None


def _walk_errors(node: Any, where: str, depth: int, errors: list[str], count: list[int]) -> None:
    """Append the problems of ``node`` (at ``where``, a position such as ``all[1]``)."""
    if not isinstance(node, dict):
        errors.append(_at(where, _("give a condition (field, op, value) or a group (all or any).")))
        return
    groups = [key for key in GROUPS if key in node]
    if groups:
        if len(node) != 1:
            errors.append(_at(where, _("a group has exactly one key, all or any.")))
            return
        key = groups[0]
        members = node[key]
        if depth >= MAX_DEPTH:
            errors.append(
                _at(
                    where,
                    _("groups nest at most %(limit)s levels deep.") % {"limit": MAX_DEPTH},
                )
            )
            return
        if not isinstance(members, list) or not members:
            errors.append(
                _at(where, _("%(group)s needs a non-empty list of conditions.") % {"group": key})
            )
            return
        prefix = key if where == _top() else f"{where}.{key}"
        for index, member in enumerate(members):
            _walk_errors(member, f"{prefix}[{index}]", depth + 1, errors, count)
        return
    count[0] += 1
    unknown = sorted(set(node) - {"field", "op", "value"})
    if unknown:
        errors.append(
            _at(
                where,
                _("unknown keys %(keys)s; a condition has field, op and value.")
                % {"keys": ", ".join(unknown)},
            )
        )
    problem = _field_problem(node.get("field"))
    if problem:
        errors.append(_at(where, problem))
    op = node.get("op")
    if op not in OPERATORS:
        errors.append(
            _at(
                where,
                _("%(op)s is not a comparison; use one of %(choices)s.")
                % {
                    "op": json.dumps(op, ensure_ascii=False) if op is not None else "op",
                    "choices": ", ".join(OPERATORS),
                },
            )
        )
        return
    problem = _value_problem(op, node.get("value"), "value" in node)
    if problem:
        errors.append(_at(where, problem))


def _top() -> str:
    return _("The filter")


def _at(where: str, problem: str) -> str:
    """A problem named by its place (``all[1]``, or "The filter" for the whole): one
    translated form, so each language punctuates every such message alike."""
    # Translators: where is a place in the filter (all[1], any[0].all[2], The filter); the
    # problem a sentence. French puts a no-break space before the colon.
    return _("%(where)s: %(problem)s") % {"where": where, "problem": problem}


def filter_errors(spec: Any) -> list[str]:
    """Every problem of a filter's shape, each a sentence naming where it is; [] if none.

    ``None`` (or ``{}``) is no filter: every event passes.
    """
    if spec is None or spec == {}:
        return []
    errors: list[str] = []
    count = [0]
    _walk_errors(spec, _top(), 0, errors, count)
    if count[0] > MAX_CONDITIONS:
        errors.append(
            _("A filter has at most %(limit)s conditions; this one has %(count)s.")
            % {"limit": MAX_CONDITIONS, "count": count[0]}
        )
    return errors


def filter_conditions(spec: Any) -> Iterator[Condition]:
    """The conditions of a valid filter, in the order written."""
    if not spec:
        return
    for key in GROUPS:
        if key in spec:
            for member in spec[key]:
                yield from filter_conditions(member)
            return
    yield Condition(
        field=spec["field"],
        path=path_split(spec["field"]),
        op=spec["op"],
        value=spec.get("value", True) if spec["op"] == "exists" else spec["value"],
    )


# --- Running it -----------------------------------------------------------------------------


def _same(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, but a boolean is no number and a text no number."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and left == right


def _ordered(left: Any, right: Any) -> bool:
    """Whether the two can be ordered: two numbers or two texts."""
    return (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )


def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    """``path_get`` for one path, made once: a key of one or two parts (most fields) is read
    without the loop."""
    if any(_is_index(segment) for segment in path) or len(path) > 2:
        return lambda data: path_get(data, path)
    if len(path) == 1:
        (first,) = path

        def one(data: Any) -> Any:
            return data.get(first, _MISSING) if type(data) is dict else _MISSING

        return one
    first, second = path

    def two(data: Any) -> Any:
        if type(data) is not dict:
            return _MISSING
        inner = data.get(first, _MISSING)
        return inner.get(second, _MISSING) if type(inner) is dict else _MISSING

    return two


def _equals(value: Any) -> Callable[[Any], bool]:
    """``_same(found, value)`` for one value, made once: JSON texts, booleans and null compare
    by themselves, numbers with numbers only (``True == 1`` in Python, not in JSON)."""
    if isinstance(value, str):
        return lambda found: found == value
    if value is None or isinstance(value, bool):
        return lambda found: found is value
    return lambda found: (type(found) is int or type(found) is float) and found == value


def _comparison(condition: Condition) -> Predicate:
    """The predicate of one condition over an event's ``data``."""
    get, op, value = _getter(condition.path), condition.op, condition.value
    if op == "exists":
        wanted = bool(value)
        return lambda data: (get(data) is not _MISSING) is wanted

    test: Callable[[Any], bool]
    if op in ("eq", "ne"):
        equals = _equals(value)
        if op == "eq":
            return lambda data: equals(get(data))  # _MISSING equals nothing
        test = lambda found: not equals(found)  # noqa: E731
    elif op in ("in", "not_in"):
        # Sets by kind: 12 and 12.0 hash alike, as JSON's equality wants; true is no number.
        texts = frozenset(member for member in value if isinstance(member, str))
        numbers = frozenset(member for member in value if _is_number(member))
        singletons = [member for member in value if member is None or isinstance(member, bool)]

        def member_of(found: Any) -> bool:
            kind = type(found)
            if kind is str:
                return found in texts
            if kind is int or kind is float:
                return found in numbers
            return any(found is member for member in singletons)

        if op == "in":
            return lambda data: member_of(get(data))
        test = lambda found: not member_of(found)  # noqa: E731
    elif op in ("gt", "gte", "lt", "lte"):
        compare = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }[op]
        test = lambda found: _ordered(found, value) and compare(found, value)  # noqa: E731
    elif op == "contains":

        def test(found: Any) -> bool:
            if isinstance(found, str):
                return isinstance(value, str) and value in found
            if isinstance(found, list):
                return any(_same(member, value) for member in found)
            return False

    elif op == "starts_with":
        test = lambda found: type(found) is str and found.startswith(value)  # noqa: E731
    else:  # ends_with
        test = lambda found: type(found) is str and found.endswith(value)  # noqa: E731

    def predicate(data: Any) -> bool:
        found = get(data)
        return found is not _MISSING and test(found)

    return predicate


def _compiled(spec: Mapping[str, Any]) -> Predicate:
    if "all" in spec:
        members = [_compiled(member) for member in spec["all"]]

        # A loop, not all() over a generator: this runs a thousand times per event.
        def every(data: Any) -> bool:
            for member in members:  # noqa: SIM110
                if not member(data):
                    return False
            return True

        return every
    if "any" in spec:
        members = [_compiled(member) for member in spec["any"]]

        def some(data: Any) -> bool:
            for member in members:  # noqa: SIM110
                if member(data):
                    return True
            return False

        return some
    (condition,) = filter_conditions(spec)
    return _comparison(condition)


def _every_event(data: Any) -> bool:
    return True


def filter_compile(spec: Any) -> Predicate:
    """A predicate over an event's ``data``: whether the webhook receives the event.

    Build it once per webhook and batch, run it per event (it never raises on any ``data``).
    No filter (``None`` or ``{}``) passes every event. Raises ``FilterInvalid`` for a filter
    ``filter_errors`` refuses (a stored filter has been checked on save).
    """
    if spec is None or spec == {}:
        return _every_event
    problems = filter_errors(spec)
    if problems:
        raise FilterInvalid(problems)
    return _compiled(spec)


def filter_matches(spec: Any, data: Any) -> bool:
    """Whether ``data`` passes the filter (compiles it each time: for one-off checks)."""
    return filter_compile(spec)(data)


# --- In plain words -------------------------------------------------------------------------


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def condition_describe(condition: Condition) -> str:
    """One condition as a sentence: ``course.group.id is 12``."""
    field, op, value = condition.field, condition.op, condition.value
    if op == "exists":
        if value:
            return _("%(field)s is present") % {"field": field}
        return _("%(field)s is absent") % {"field": field}
    words = {
        "eq": _("%(field)s is %(value)s"),
        "ne": _("%(field)s is present and is not %(value)s"),
        "in": _("%(field)s is one of %(value)s"),
        "not_in": _("%(field)s is present and is none of %(value)s"),
        "gt": _("%(field)s is greater than %(value)s"),
        "gte": _("%(field)s is at least %(value)s"),
        "lt": _("%(field)s is less than %(value)s"),
        "lte": _("%(field)s is at most %(value)s"),
        "contains": _("%(field)s contains %(value)s"),
        "starts_with": _("%(field)s starts with %(value)s"),
        "ends_with": _("%(field)s ends with %(value)s"),
    }[op]
    shown = ", ".join(_shown(member) for member in value) if isinstance(value, list) else value
    return words % {"field": field, "value": shown if isinstance(value, list) else _shown(value)}


def filter_describe(spec: Any) -> list[tuple[int, str]]:
    """A valid filter in plain words: lines with their depth (0 for the top), a group's heading
    followed by its members one level deeper. No filter reads "Every event"."""
    if not spec:
        return [(0, _("Every event of the selected types."))]
    lines: list[tuple[int, str]] = []

    def walk(node: Mapping[str, Any], depth: int) -> None:
        if "all" in node:
            lines.append((depth, _("Every one of these holds:")))
            for member in node["all"]:
                walk(member, depth + 1)
        elif "any" in node:
            lines.append((depth, _("At least one of these holds:")))
            for member in node["any"]:
                walk(member, depth + 1)
        else:
            (condition,) = filter_conditions(node)
            lines.append((depth, condition_describe(condition)))

    walk(spec, 0)
    return lines


def filter_describe_text(spec: Any) -> str:
    """``filter_describe`` as indented text, one line each."""
    return "\n".join(
        ("  " * depth + ("- " if depth else "")) + text for depth, text in filter_describe(spec)
    )


# --- Against the event types' schemas and samples -----------------------------------------

# What a declared field can hold, in JSON Schema's type names.
_JSON_TYPES = ("string", "integer", "number", "boolean", "null", "array", "object")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _schema_types(schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON types a schema allows, or None when it does not say."""
    declared = schema.get("type")
    if isinstance(declared, str):
        declared = [declared]
    if not isinstance(declared, list) or not declared:
        if isinstance(schema.get("properties"), dict):
            return {"object"}
        return None
    types = {kind for kind in declared if kind in _JSON_TYPES}
    if "number" in types:
        types.add("integer")
    return types or None


_OPEN = "open"  # below an object that allows more than it declares: anything may be there
_ABSENT = "absent"  # cannot be there


def _schema_field(schema: Any, path: tuple[str, ...]) -> Mapping[str, Any] | str:
    """The schema of the field at ``path``, ``_OPEN`` if the schema cannot say, or ``_ABSENT``.

    The first segment must be declared (``data`` always has a declared object, so an undeclared
    first name is a typo); below it, an object that allows additional properties leaves an
    undeclared name open.
    """
    current: Any = schema
    for depth, segment in enumerate(path):
        if not isinstance(current, Mapping):
            return _OPEN
        types = _schema_types(current)
        properties = current.get("properties")
        if isinstance(properties, Mapping) and segment in properties:
            current = properties[segment]
            continue
        if isinstance(current.get("items"), Mapping) and _is_index(segment):
            current = current["items"]
            continue
        if types is not None and not types & {"object", "array"}:
            return _ABSENT  # a text or a number has no fields
        if depth == 0 and isinstance(properties, Mapping) and properties:
            return _ABSENT
        if isinstance(properties, Mapping) and current.get("additionalProperties") is False:
            return _ABSENT
        return _OPEN
    return current if isinstance(current, Mapping) else _OPEN


def _possible(condition: Condition, types: set[str], enum: list[Any] | None) -> bool:
    """Whether a field of these JSON types (and enum) can ever satisfy the condition."""
    op, value = condition.op, condition.value
    if op in ("exists", "ne", "not_in"):
        return True
    if op in ("eq", "in"):
        values = value if op == "in" else [value]
        for member in values:
            kind = _json_type(member)
            if (kind in types or (kind == "integer" and "number" in types)) and (
                enum is None or any(_same(member, allowed) for allowed in enum)
            ):
                return True
        return False
    if op in ("gt", "gte", "lt", "lte"):
        return (
            ("string" in types) if isinstance(value, str) else bool(types & {"integer", "number"})
        )
    if op == "contains":
        return "array" in types or ("string" in types and isinstance(value, str))
    return "string" in types  # starts_with, ends_with


def filter_schema_errors(
    spec: Any, event_types: Mapping[str, tuple[Mapping[str, Any], Any]]
) -> list[str]:
    """The conditions of a valid filter that no selected event type can satisfy, each named.

    ``event_types`` maps each selected type's key to its (JSON Schema, sample data). A field is
    refused when it is in no type (its first name undeclared, or below a text or number), and a
    comparison when every type that has the field gives it a kind the value can never match
    (``course.id eq true`` where ids are texts or numbers). A type without a usable schema,
    and a field below an object that allows more than it declares, accept anything. The
    sample stands in for what the schema does not say.
    """
    if not spec or not event_types:
        return []
    errors: list[str] = []
    for condition in filter_conditions(spec):
        field_somewhere = False
        possible = False
        for schema, sample in event_types.values():
            found = _schema_field(schema, condition.path) if schema else _OPEN
            in_sample = path_get(sample, condition.path)
            if found is _ABSENT and in_sample is _MISSING:
                continue
            field_somewhere = True
            types: set[str] | None = None
            enum: list[Any] | None = None
            if isinstance(found, Mapping):
                types = _schema_types(found)
                enum = found.get("enum") if isinstance(found.get("enum"), list) else None
            if types is None and in_sample is not _MISSING and found is not _OPEN:
                types = {_json_type(in_sample)}
            if types is None or _possible(condition, types, enum):
                possible = True
                break
        described = condition_describe(condition)
        if not field_somewhere:
            errors.append(
                _("“%(condition)s”: the selected event types have no field %(field)s.")
                % {"condition": described, "field": condition.field}
            )
        elif not possible:
            errors.append(
                _(
                    "“%(condition)s” can never hold: in the selected event types %(field)s "
                    "cannot have that value."
                )
                % {"condition": described, "field": condition.field}
            )
    return errors
