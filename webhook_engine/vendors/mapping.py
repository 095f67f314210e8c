"""A small declarative language for a vendor's body: how each vendor field is taken from an event.

A vendor module (``braincert.py``, ``edusign.py``, ...) writes one spec per event type out of these
parts; ``spec_apply`` builds the body from an event and ``spec_rows`` describes the same spec for
the reference (``docs/events.md``), so the documentation is the mapping itself.

- ``{"key": spec, ...}``            an object built at the current place (omitted when empty);
- ``Obj("data.group", {...})``      an object built from the value at a path (omitted when absent),
  its fields read relative to it; ``rest=Rest(...)`` passes on the properties nobody mapped;
- ``Each("data.teams", {...})``     a list, one item per element of the list at a path;
- ``Field("name", FORMAT, ...)``    the value at a path, through formats; omitted when absent
  (``default=`` sends that instead);
- ``Const(value)``                  a fixed value;
- ``FirstOf(a, b)``                 the first of several specs that gives a value;
- ``FullName("first_name", "last_name")`` the parts that are present, joined by a space.

Paths are dotted and relative to where the spec is applied; a path starting with ``$`` reads from
the root: ``$school.id``, ``$event.occurred_at``, ``$data.completed_at``. The root is
``{"event": {"id", "type", "occurred_at"}, "school": {"id", "slug"}, "data": {...}}``.

Dates: a field without a date format of its own that yields an ISO-8601 datetime with an offset
is written in the profile's date format (``Context.dates``), so a vendor's convention is stated
once. Values are never invented: a missing source omits the key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..envelope import json_number

_AWARE_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
)


class _Missing:
    """No value: the key is left out of the vendor's body."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def datetime_parse(value: object) -> dt.datetime | None:
    """An aware datetime from an ISO-8601 string with an offset, else None."""
    if not isinstance(value, str) or not _AWARE_DATETIME.match(value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- Formats --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """A named conversion of one value (``None`` passes through untouched unless the format
    ``takes_null``)."""

    doc: str
    convert: Callable[[Any], Any]
    is_date: bool = False
    takes_null: bool = False

    def __call__(self, value: Any) -> Any:
        if value is MISSING or (value is None and not self.takes_null):
            return value
        return self.convert(value)


def _date_format(doc: str, render: Callable[[dt.datetime], Any]) -> Format:
    def convert(value: Any) -> Any:
        parsed = datetime_parse(value)
        return value if parsed is None else render(parsed)

    return Format(doc, convert, is_date=True)


def _utc(value: dt.datetime, timespec: str) -> str:
    # isoformat, not strftime: "%Y" writes the year 500 as "500", which no ISO parser reads.
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


UTC_MS = _date_format(
    "UTC with milliseconds, `2024-02-14T10:30:00.000Z`",
    lambda value: _utc(value, "milliseconds"),
)
UTC_S = _date_format(
    "UTC to the second, `2024-02-14T12:00:00Z`", lambda value: _utc(value, "seconds")
)
LOCAL_S = _date_format(
    "the school's time zone to the second, `2026-03-26T09:00:00+02:00`",
    lambda value: value.replace(microsecond=0).isoformat(),
)
# Envelope dates are already in the school's zone: ISO-8601 as Python writes it.
LOCAL = _date_format("the school's time zone, ISO-8601", lambda value: value.isoformat())
UNIX = _date_format("Unix time in seconds", lambda value: int(value.timestamp()))


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json_number(value)
    return value


TEXT = Format("as text", _text)
UPPER = Format("in capitals", lambda value: value.upper() if isinstance(value, str) else value)
CAPITALIZED = Format(
    "with a capital initial",
    lambda value: value[:1].upper() + value[1:] if isinstance(value, str) else value,
)
YES_NO = Format(
    '`"yes"` or `"no"`',
    lambda value: ("yes" if value else "no") if isinstance(value, bool) else value,
)
IS_SET = Format("whether it is set", lambda value: value is not None, takes_null=True)


def lookup(table: Mapping[str, str]) -> Format:
    """Values renamed by a table (others unchanged)."""
    doc = ", ".join(f"`{key}` → `{value}`" for key, value in table.items())
    return Format(doc, lambda value: table.get(value, value) if isinstance(value, str) else value)


def suffix(unit: str) -> Format:
    """A number written as text with a unit: ``1.2`` -> ``"1.2 lb"``."""
    return Format(f'as text with `"{unit}"` after it', lambda value: f"{_text(value)}{unit}")


def camel_case(key: str) -> str:
    """``is_anonymous`` -> ``isAnonymous`` (keys without underscores are unchanged)."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# --- Specs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What applying a spec needs besides the value it reads from."""

    root: Mapping[str, Any]
    dates: Format  # the profile's date format


def _lookup(path: str, scope: Any, context: Context) -> Any:
    if path.startswith("$"):
        scope, path = context.root, path[1:]
    for part in path.split(".") if path else ():
        if not isinstance(scope, Mapping) or part not in scope:
            return MISSING
        scope = scope[part]
    return scope


def _source(base: str, path: str) -> str:
    """The path as a receiver of the standard envelope knows it, for the reference."""
    if path.startswith("$"):
        return path[1:]
    return f"{base}.{path}" if base else path


@dataclass(frozen=True)
class Field:
    path: str
    formats: tuple[Format, ...] = ()
    default: Any = MISSING

    def __init__(self, path: str, *formats: Format, default: Any = MISSING) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "formats", formats)
        object.__setattr__(self, "default", default)

    def apply(self, scope: Any, context: Context) -> Any:
        value = _lookup(self.path, scope, context)
        if value is MISSING:
            return self.default
        if not any(fmt.is_date for fmt in self.formats) and datetime_parse(value) is not None:
            value = context.dates(value)
        for fmt in self.formats:
            value = fmt(value)
        return value

    def describe(self, base: str) -> str:
        text = f"`{_source(base, self.path)}`"
        if self.formats:
            text += ", " + ", ".join(fmt.doc for fmt in self.formats)
        if self.default is not MISSING:
            text += f" (`{_json_text(self.default)}` when absent)"
        return text


@dataclass(frozen=True)
class Const:
    value: Any

    def apply(self, scope: Any, context: Context) -> Any:
        return self.value

    def describe(self, base: str) -> str:
        return f"always `{_json_text(self.value)}`"


@dataclass(frozen=True)
class FirstOf:
    options: tuple[Spec, ...]

    def __init__(self, *options: Spec) -> None:
        object.__setattr__(self, "options", options)

    def apply(self, scope: Any, context: Context) -> Any:
        for option in self.options:
            value = spec_apply(option, scope, context)
            if value is not MISSING:
                return value
        return MISSING

    def describe(self, base: str) -> str:
        return ", else ".join(_describe_leaf(option, base) for option in self.options)


@dataclass(frozen=True)
class FullName:
    parts: tuple[str, ...]

    def __init__(self, *parts: str) -> None:
        object.__setattr__(self, "parts", parts)

    def apply(self, scope: Any, context: Context) -> Any:
        values = [_lookup(part, scope, context) for part in self.parts]
        words = [str(value) for value in values if value not in (MISSING, None, "")]
        return " ".join(words) if words else MISSING

    def describe(self, base: str) -> str:
        return " and ".join(f"`{_source(base, part)}`" for part in self.parts) + ", joined"


@dataclass(frozen=True)
class Rest:
    """The properties of the object being built's source that no field maps, passed on (values
    as they are, dates in the profile's format), their names in camelCase unless ``camel`` is
    off."""

    exclude: tuple[str, ...] = ()
    camel: bool = True

    def items(self, source: Mapping[str, Any], context: Context) -> dict[str, Any]:
        return {
            self._name(key): self._value(value, context)
            for key, value in source.items()
            if key not in self.exclude
        }

    def _name(self, key: object) -> str:
        return camel_case(str(key)) if self.camel else str(key)

    def _value(self, value: Any, context: Context) -> Any:
        if isinstance(value, Mapping):
            return {self._name(key): self._value(item, context) for key, item in value.items()}
        if isinstance(value, list):
            return [self._value(item, context) for item in value]
        if datetime_parse(value) is not None:
            return context.dates(value)
        return value


@dataclass(frozen=True)
class Obj:
    path: str
    fields: Mapping[str, Spec]
    rest: Rest | None = None

    def apply(self, scope: Any, context: Context) -> Any:
        source = _lookup(self.path, scope, context)
        if not isinstance(source, Mapping):
            return MISSING if source is MISSING else source
        built = _object_build(self.fields, source, context)
        if self.rest is not None:
            for key, value in self.rest.items(source, context).items():
                built.setdefault(key, value)
        return built


@dataclass(frozen=True)
class Each:
    path: str
    item: Spec
    single: bool = False  # a single object at the path is a list of one

    def apply(self, scope: Any, context: Context) -> Any:
        source = _lookup(self.path, scope, context)
        if self.single and isinstance(source, Mapping):
            source = [source]
        if not isinstance(source, list):
            return MISSING if source is MISSING else source
        items = [spec_apply(self.item, element, context) for element in source]
        return [item for item in items if item is not MISSING]


Spec: TypeAlias = "Field | Const | FirstOf | FullName | Obj | Each | Mapping[str, Spec]"


def _object_build(fields: Mapping[str, Spec], scope: Any, context: Context) -> dict[str, Any]:
    built = {}
    for key, spec in fields.items():
        value = spec_apply(spec, scope, context)
        if value is not MISSING:
            built[key] = value
    return built


def spec_apply(spec: Spec, scope: Any, context: Context) -> Any:
    """The vendor's value for ``spec`` read from ``scope`` (``MISSING`` when there is none)."""
    if isinstance(spec, Mapping):
        built = _object_build(spec, scope, context)
        return built if built else MISSING
    return spec.apply(scope, context)


# --- The reference --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One vendor path and where its value comes from."""

    path: str
    source: str


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _describe_leaf(spec: Spec, base: str) -> str:
    if isinstance(spec, Field | Const | FirstOf | FullName):
        return spec.describe(base)
    if isinstance(spec, Obj):
        return f"`{_source(base, spec.path)}`"
    if isinstance(spec, Each):
        return f"`{_source(base, spec.path)}`" + (" as a list of one" if spec.single else "")
    return "an object"


@dataclass
class _Rows:
    rows: list[Row] = field(default_factory=list)

    def walk(self, spec: Spec, path: str, base: str) -> None:
        if isinstance(spec, Mapping):
            for key, item in spec.items():
                self.walk(item, f"{path}.{key}" if path else key, base)
        elif isinstance(spec, Obj):
            source = _source(base, spec.path)
            self.rows.append(Row(path, f"`{source}`"))
            for key, item in spec.fields.items():
                self.walk(item, f"{path}.{key}", source)
            if spec.rest is not None:
                skipped = ", ".join(f"`{key}`" for key in spec.rest.exclude)
                naming = "its name in camelCase" if spec.rest.camel else "as it is"
                self.rows.append(
                    Row(
                        f"{path}.*",
                        f"every other property of `{source}`, {naming}"
                        + (f" (not {skipped})" if skipped else ""),
                    )
                )
        elif isinstance(spec, Each):
            source = _source(base, spec.path)
            self.rows.append(Row(path, _describe_leaf(spec, base) + ", one item each"))
            self.walk(spec.item, f"{path}[]", f"{source}[]")
        elif isinstance(spec, FirstOf) and any(
            isinstance(option, Each | Obj) for option in spec.options
        ):
            self.rows.append(Row(path, spec.describe(base)))
            first = next(option for option in spec.options if isinstance(option, Each | Obj))
            self.walk_children(first, path, base)
        else:
            self.rows.append(Row(path, _describe_leaf(spec, base)))

    def walk_children(self, spec: Each | Obj, path: str, base: str) -> None:
        source = _source(base, spec.path)
        if isinstance(spec, Each):
            self.walk(spec.item, f"{path}[]", f"{source}[]")
        else:
            for key, item in spec.fields.items():
                self.walk(item, f"{path}.{key}", source)


def spec_rows(spec: Spec) -> list[Row]:
    """Every vendor path of ``spec`` (objects and lists first, then their fields) with where
    its value comes from, for the reference."""
    rows = _Rows()
    rows.walk(spec, "", "")
    return rows.rows
