"""The API's JSON parser (its own module: DRF imports it while it defines its views)."""

from __future__ import annotations

import codecs
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions, parsers
from rest_framework.parsers import get_encoding  # type: ignore[attr-defined]  # newer than the stubs
from rest_framework.utils import json

from webhook_engine.inputs import MAX_JSON_DEPTH, json_problems


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what the rest of the product cannot carry (the rules of
    ``webhook_engine.inputs``): nesting deeper than ``MAX_JSON_DEPTH``, NUL and lone surrogates
    in any key or string, numbers that are not finite. A 400 with a field map names each place
    (``data.course.id: ...``) instead of a 500 later in the database, the envelope or a template.
    The body's size was checked before (``common.middleware``: 413).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        repeated: list[str] = []  # keys given twice in one object, as the parser finds them

        def object_from(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for key, value in pairs:
                if key in result and key not in repeated:
                    repeated.append(key)
                result[key] = value
            return result

        try:
            # As DRF's parser reads it (its charset checks included), keeping each object's pairs.
            reader = codecs.getreader(get_encoding(parser_context or {}))(stream)
            data = json.load(
                reader,  # type: ignore[arg-type]  # a text stream
                parse_constant=json.strict_constant if self.strict else None,
                object_pairs_hook=object_from,
            )
        except RecursionError:
            raise exceptions.ValidationError(
                {
                    "__all__": [
                        _("The JSON is nested more than %(limit)s levels deep.")
                        % {"limit": MAX_JSON_DEPTH}
                    ]
                }
            ) from None
        except ValueError as exc:
            message = _("JSON parse error - %(error)s") % {"error": exc}
            raise exceptions.ParseError(message) from None
        if repeated:
            # JSON parsers disagree on which of two equal keys wins: whatever read the body on
            # its way here may have seen the other one.
            raise exceptions.ValidationError(
                {
                    "__all__": [
                        _("The key %(key)s appears twice in one JSON object; give it once.")
                        % {"key": key}
                        for key in repeated
                    ]
                }
            )
        problems = json_problems(data)
        if problems:
            errors: dict[str, list[str]] = {}
            for path, message in problems:
                field = path.split(".", 1)[0].split("[", 1)[0] or "__all__"
                errors.setdefault(field, []).append(message)
            raise exceptions.ValidationError(errors)
        return data
