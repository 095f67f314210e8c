"""The API's JSON parser (its own module: DRF imports it while it defines its views)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions, parsers

from webhook_engine.inputs import MAX_JSON_DEPTH, json_problems


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what the rest of the product cannot carry (the rules of
    ``webhook_engine.inputs``): nesting deeper than ``MAX_JSON_DEPTH``, NUL and lone surrogates
    in any key or string, numbers that are not finite. A 400 with a field map names each place
    (``data.course.id: ...``) instead of a 500 later in the database, the envelope or a template.
    The body's size was checked before (``common.middleware``: 413).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ValidationError(
                {
                    "__all__": [
                        _("The JSON is nested more than %(limit)s levels deep.")
                        % {"limit": MAX_JSON_DEPTH}
                    ]
                }
            ) from None
        problems = json_problems(data)
        if problems:
            errors: dict[str, list[str]] = {}
            for path, message in problems:
                field = path.split(".", 1)[0].split("[", 1)[0] or "__all__"
                errors.setdefault(field, []).append(message)
            raise exceptions.ValidationError(errors)
        return data
