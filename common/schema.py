"""The OpenAPI description's view."""

from __future__ import annotations

import threading
from typing import Any

from django.http import HttpResponse
from django.utils import translation
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response


class SchemaView(SpectacularAPIView):
    """``GET /api/schema/``: the OpenAPI description, generated once per process and language.

    drf-spectacular keeps state in module-level registries while it generates, so concurrent
    first requests on a cold process broke each other (500s); one lock makes the first request
    generate it and the others wait for that copy.
    """

    _lock = threading.Lock()
    _schemas: dict[tuple[str | None, str | None], Any] = {}

    def _get_schema_response(self, request: Request) -> Response:
        version = self.api_version or request.version or self._get_version_parameter(request)
        key = (version, translation.get_language())
        with self._lock:
            schema = self._schemas.get(key)
            if schema is None:
                generator = self.generator_class(
                    urlconf=self.urlconf, api_version=version, patterns=self.patterns
                )
                schema = generator.get_schema(request=request, public=self.serve_public)
                self._schemas[key] = schema
        filename = self._get_filename(request, version)
        return Response(
            data=schema, headers={"Content-Disposition": f'inline; filename="{filename}"'}
        )


class SwaggerView(SpectacularSwaggerView):
    """``GET /api/docs/``: Swagger UI over ``/api/schema/``.

    drf-spectacular's view answers OPTIONS with DRF's metadata (a dict), which its only renderer,
    an HTML template made for the page, cannot render: every OPTIONS was a 500. It answers as a
    plain Django view does instead, with the methods in ``Allow`` and no body.
    """

    def options(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]  # not DRF's Response: nothing to render
        response = HttpResponse()
        response["Allow"] = ", ".join(self.allowed_methods)
        response["Content-Length"] = "0"
        return response


# Answers any operation can give besides the ones it documents itself.
_ANSWERS_OF_EVERY_OPERATION = {
    "400": (
        "Errors",
        "Invalid input, by field (a parameter that cannot be stored, such as one with a NUL, "
        "is refused before anything else).",
    ),
    "406": ("Detail", "The Accept header allows none of the media types this operation answers."),
    "429": ("Detail", "Too many failed authentications from this address, or too many requests."),
}
_ANSWER_OF_A_BODY = {
    "413": ("Detail", "The request body is too large."),
    "415": ("Detail", "The body is not JSON (its Content-Type is not application/json)."),
}


def responses_complete(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents what the request layer
    answers for any of them (400 for parameters that cannot be stored, 406 for an Accept header
    it cannot satisfy, 429 past the limit of failed authentications), and every operation with
    a body its 413 and 415 (a body that is not JSON)."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            extra = dict(_ANSWERS_OF_EVERY_OPERATION)
            if "requestBody" in operation:
                extra.update(_ANSWER_OF_A_BODY)
            responses = operation.setdefault("responses", {})
            for status, (component, description) in extra.items():
                responses.setdefault(
                    status,
                    {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{component}"}
                            }
                        },
                        "description": description,
                    },
                )
    return result


# Query parameters that are not filters: an empty cursor is the first page.
_NOT_FILTERS = {"cursor", "page", "page_size"}


def filters_not_empty(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every text filter of the query string says it takes
    no empty value, as the API refuses one with a 400 naming it (``StrictFilterSet``, the
    events' and scheduled events' filters) instead of answering every row."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if (
                    parameter.get("in") == "query"
                    and parameter.get("name") not in _NOT_FILTERS
                    and schema.get("type") == "string"
                ):
                    schema.setdefault("minLength", 1)
    return result
