"""Validating event data against an event type's JSON Schema. Pure functions, no database access.

Schemas are JSON Schema draft 2020-12. Besides the standard keywords, the ``date-time``, ``date``
and ``email`` formats are checked: a ``date-time`` must carry a UTC offset (``Z`` or ``+02:00``),
because deliveries re-express datetimes in the school's zone and cannot guess a naive one's.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError

MAX_MESSAGES = 10

FORMAT_CHECKER = FormatChecker(formats=())

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_datetime_with_offset(value: object) -> bool:
    if not isinstance(value, str):
        return True  # formats constrain strings only; "type" catches the rest
    if not _OFFSET.search(value):
        return False
    dt.datetime.fromisoformat(value)
    return True


@FORMAT_CHECKER.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    dt.date.fromisoformat(value)
    return True


@FORMAT_CHECKER.checks("email")
def _is_email(value: object) -> bool:
    if not isinstance(value, str):
        return True
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain)


def path_format(root: str, path: Iterable[str | int]) -> str:
    """``data.course.instructors[0].id`` from a root name and a JSON path."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


_FORMAT_NAMES = {
    "date-time": "an ISO-8601 date-time with a UTC offset",
    "date": "an ISO-8601 date (YYYY-MM-DD)",
    "email": "an e-mail address",
}


def _located(error: ValidationError, root: str) -> tuple[list[str | int], str]:
    """The path an error is about and its message, the path leading."""
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # Name the missing property in the path too: data.course.id: 'id' is a required property.
        missing = next(
            (
                name
                for name in error.validator_value
                if name not in error.instance and error.message.startswith(repr(name))
            ),
            None,
        )
        if missing is not None:
            path.append(missing)
    if error.validator == "format":
        expected = _FORMAT_NAMES.get(error.validator_value, f"a valid {error.validator_value}")
        message = f"{error.instance!r} is not {expected}"
    else:
        message = error.message
    return path, f"{path_format(root, path)}: {message}"


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    """A validator per distinct schema (keyed by its content, so an edited schema gets its own)."""
    return Draft202012Validator(json.loads(schema_json), format_checker=FORMAT_CHECKER)


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """The compiled validator of ``schema`` (one per distinct schema in this process)."""
    return _validator(json.dumps(schema, sort_keys=True))


def data_errors(
    schema: dict[str, Any],
    data: Any,
    *,
    root: str = "data",
    validator: Draft202012Validator | None = None,
) -> list[str]:
    """Messages for every way ``data`` fails ``schema``, each naming its path, sorted by path.

    At most ``MAX_MESSAGES`` are returned (the first ones in path order); an empty list means the
    data is valid. An empty schema accepts anything. ``schema`` must itself be valid
    (see ``schema_errors``). ``validator``: ``schema``'s, compiled already (finding it costs
    encoding the schema).
    """
    if not schema:
        return []
    validator = validator or schema_validator(schema)
    located = sorted(
        (_located(error, root) for error in validator.iter_errors(data)),
        key=lambda item: ([str(part) for part in item[0]], item[1]),
    )
    messages: list[str] = []
    for _, message in located:
        if message not in messages:
            messages.append(message)
    return messages[:MAX_MESSAGES]


def schema_errors(schema: Any) -> list[str]:
    """Why ``schema`` is not a usable JSON Schema (draft 2020-12); empty when it is."""
    if not isinstance(schema, dict):
        return ["A JSON Schema is a JSON object."]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return [f"{path_format('schema', error.absolute_path)}: {error.message}"]
    return []
