"""The default envelope of an event as receivers see it. Pure functions, no database access.

The envelope (DESIGN.md, "Delivery contract")::

    {"id": <event id>, "type": "course.created", "school": {"id": 1, "slug": "..."},
     "timestamp": <occurred_at in the school's zone>, "data": {...}}

Every ISO-8601 datetime with an offset inside ``data`` is re-expressed in the school's time zone
with its UTC offset at that instant, so receivers never convert (Edusign's "dates in the school's
time zone"); dates without an offset are left as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.parsers.expat
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import xmltodict

_AWARE_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
)


def aware_datetime_parse(value: str) -> dt.datetime | None:
    """The datetime an ISO-8601 string with a UTC offset holds (the strings deliveries move into
    the school's zone), or None for any other string."""
    if not _AWARE_DATETIME.match(value):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def datetime_localize(value: dt.datetime, tz: ZoneInfo) -> str:
    """ISO-8601 in ``tz`` with its UTC offset at that instant (DST-correct).

    An instant the zone's calendar cannot hold (within hours of year 1 or year 9999, which
    publishing refuses since) is written in UTC, or as given if UTC cannot hold it either: a
    delivery is never stuck on a date.
    """
    try:
        return value.astimezone(tz).isoformat()
    except OverflowError:
        try:
            return value.astimezone(dt.UTC).isoformat()
        except OverflowError:
            return value.isoformat()


def datetimes_localize(value: Any, tz: ZoneInfo) -> Any:
    """A copy of a JSON value with every aware ISO-8601 datetime string moved into ``tz``
    (a string whose instant the zone cannot hold is left as it is)."""
    if isinstance(value, str):
        parsed = aware_datetime_parse(value)
        if parsed is None:
            return value
        try:
            return parsed.astimezone(tz).isoformat()
        except OverflowError:
            return value
    if isinstance(value, dict):
        return {key: datetimes_localize(item, tz) for key, item in value.items()}
    if isinstance(value, list):
        return [datetimes_localize(item, tz) for item in value]
    return value


def envelope_build(
    *,
    event_id: str,
    event_type: str,
    school_id: int,
    school_slug: str,
    occurred_at: dt.datetime,
    data: dict[str, Any],
    tz: ZoneInfo,
) -> dict[str, Any]:
    """The default envelope of one event for one school."""
    return {
        "id": event_id,
        "type": event_type,
        "school": {"id": school_id, "slug": school_slug},
        "timestamp": datetime_localize(occurred_at, tz),
        "data": datetimes_localize(data, tz),
    }


# --- Wire formats ---------------------------------------------------------------------------


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_number(value: int | float) -> str:
    """A number as JavaScript writes it (``Number.prototype.toString``): ``1.0`` is ``1``,
    ``1e-05`` is ``0.00001``, ``1e16`` is ``10000000000000000``; not finite is ``null``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # Python's repr and JavaScript both give the shortest digits that round-trip; only the
    # layout differs. value = 0.d1d2...dk x 10^n (ECMA-262, Number::toString).
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    leading_zeros = len(whole + fraction) - len((whole + fraction).lstrip("0"))
    n = len(whole) - leading_zeros + (int(exponent) if exponent else 0)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        power = n - 1
        text = (digits[0] + ("." + digits[1:] if k > 1 else "")) + (
            f"e+{power}" if power > 0 else f"e-{-power}"
        )
    return sign + text


_ARRAY_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")


def _js_key_order(keys: list[str]) -> list[str]:
    """JavaScript's property order: array-index keys ascending, then the rest as inserted."""
    indexes = [key for key in keys if _ARRAY_INDEX.match(key) and int(key) < 2**32 - 1]
    others = [key for key in keys if key not in set(indexes)]
    return sorted(indexes, key=int) + others


def _js_json(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(_js_key_order([str(key) for key in value])):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _js_json(value[key] if key in value else value[int(key)], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _js_json(item, out)
        out.append("]")
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int | float):
        out.append(json_number(value))
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


def json_stringify(value: Any) -> bytes:
    """UTF-8 JSON exactly as JavaScript's ``JSON.stringify`` writes the same value: compact,
    non-ASCII as is, numbers as JavaScript writes them, integer-like keys first.

    So a receiver that signs ``JSON.stringify(JSON.parse(body))`` (Edusign's own library does)
    signs these very bytes. Integers beyond 2**53 are the one exception JavaScript cannot hold.
    """
    out: list[str] = []
    _js_json(value, out)
    return "".join(out).encode()


# XML 1.0 (fifth edition) name characters, without ":" (namespaces).
_NAME_START = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NAME_START_CHAR = re.compile(f"[{_NAME_START}]")
_NAME_CHAR = re.compile(f"[{_NAME_START}\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040]")
_ESCAPE = re.compile(r"_x([0-9A-F]{4}|[0-9A-F]{8})_")
# Characters XML 1.0 cannot carry at all, even escaped.
_XML_INVALID_TEXT = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
EMPTY_NAME = "_x_"


def xml_name_encode(key: str) -> str:
    """A valid XML element name for a JSON key, reversible with ``xml_name_decode``.

    Each character that may not appear at its place in an XML name (for XML 1.0 fifth edition and
    for expat alike) is written ``_xHHHH_`` (its
    code point in hex, eight digits beyond U+FFFF), the convention of .NET's XmlConvert.EncodeName:
    ``first name`` becomes ``first_x0020_name``, ``1st`` becomes ``_x0031_st``. A leading ``xml``
    (reserved) has its ``x`` escaped, an underscore that would read as an escape is escaped
    itself, and the empty key is written ``_x_``.
    """
    if key == "":
        return EMPTY_NAME
    out = []
    for index, char in enumerate(key):
        valid = _name_char_ok(char, start=index == 0)
        reserved = index == 0 and key[:3].lower() == "xml"
        ambiguous = char == "_" and (_ESCAPE.match(key, index) is not None or key == EMPTY_NAME)
        if valid and not reserved and not ambiguous:
            out.append(char)
        else:
            code = ord(char)
            out.append(f"_x{code:04X}_" if code <= 0xFFFF else f"_x{code:08X}_")
    return "".join(out)


@lru_cache(maxsize=4096)
def _name_char_ok(char: str, *, start: bool) -> bool:
    """Allowed by XML 1.0 fifth edition and by expat, whose name tables are older (it refuses
    some fifth-edition name characters, such as U+F900 or emoji): valid for either kind of parser.
    """
    if not (_NAME_START_CHAR if start else _NAME_CHAR).match(char):
        return False
    if char.isascii():
        return True
    parser = xml.parsers.expat.ParserCreate()
    try:
        parser.Parse(f"<{char}/>" if start else f"<a{char}/>", True)
    except xml.parsers.expat.ExpatError:
        return False
    return True


def xml_name_decode(name: str) -> str:
    """The JSON key an element name was encoded from (see ``xml_name_encode``)."""
    if name == EMPTY_NAME:
        return ""
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), name)


def xml_text(value: str) -> str:
    """Text XML can carry: characters XML 1.0 forbids (most control characters) become U+FFFD."""
    return _XML_INVALID_TEXT.sub("\ufffd", value)


def xml_carriage_returns_escape(markup: str) -> str:
    """Escaped XML text or elements with each carriage return written ``&#13;``.

    A parser reads a raw CR, or CR LF, as LF (XML 1.0, 2.11), so a value typed in a textarea
    (``line 1\r\nline 2``) would not arrive as sent; a character reference survives. Only text
    can hold a CR here: names are encoded and no attribute is written.
    """
    return markup.replace("\r", "&#13;")


def _xml_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {xml_name_encode(str(key)): _xml_value(item) for key, item in value.items()}
    if isinstance(value, list):
        if not value:
            return None  # an empty element, as null and "" are
        # A list inside a list has no element name of its own: its items become <item> elements.
        return [
            {"item": _xml_value(item)} if isinstance(item, list) and item else _xml_value(item)
            for item in value
        ]
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return xml_text(str(value))


def to_xml(value: dict[str, Any], *, root: str = "webhook") -> bytes:
    """The same tree as the JSON form under a ``<webhook>`` root, as a UTF-8 XML document
    (with its ``<?xml ...?>`` declaration).

    Objects become elements named after their keys (see ``xml_name_encode``); a list becomes its
    key's element repeated once per item; numbers are written as in JSON, booleans as ``true`` /
    ``false``; null, an empty string and an empty list become an empty element. Text is escaped,
    so ``]]>`` and markup in values arrive as text.
    """
    document = {root: _xml_value(value)}
    return xml_carriage_returns_escape(xmltodict.unparse(document, encoding="utf-8")).encode()


def xml_fragment(value: Any, *, name: str = "item") -> str:
    """A JSON value as XML elements, for embedding in a body template (no declaration)."""
    if isinstance(value, dict):
        markup = "".join(
            xmltodict.unparse({key: item}, full_document=False)
            for key, item in _xml_value(value).items()
        )
    else:
        markup = xmltodict.unparse({name: _xml_value(value)}, full_document=False)
    return xml_carriage_returns_escape(markup)
