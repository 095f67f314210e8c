"""What every API endpoint shares: permissions, pagination, errors, the OpenAPI auth scheme."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, JsonResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, pagination, permissions, serializers, status, throttling
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from schools.authentication import ApiClient
from schools.models import School

logger = logging.getLogger(__name__)


def api_client(request: Request) -> ApiClient:
    """Who is calling: the school's or the platform's client of an authenticated request."""
    client = request.user
    if not isinstance(client, ApiClient):
        raise exceptions.NotAuthenticated()
    return client


def client_school(request: Request) -> School:
    """The school whose key made the request (views guarded by ``IsSchoolClient``)."""
    school = api_client(request).school
    if school is None:
        raise exceptions.PermissionDenied(IsSchoolClient.message)
    return school


class IsSchoolClient(permissions.BasePermission):
    """A school's API key (school data is only ever seen through its own school's key)."""

    message = "This endpoint needs a school's API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(getattr(request.user, "school", None))


class IsPlatformClient(permissions.BasePermission):
    message = "This endpoint needs the platform's key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(getattr(request.user, "is_platform", False))


class IsSchoolOrPlatformClient(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(getattr(request.user, "is_authenticated", False))


class PerKeyRateThrottle(throttling.ScopedRateThrottle):
    """A view's ``throttle_scope`` rate, counted per API key."""

    def get_rate(self) -> str | None:
        # DRF copies the rates into a class attribute at import; read the setting as it is now.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        client = getattr(request, "user", None)
        if not isinstance(client, ApiClient):
            return None
        return self.cache_format % {"scope": self.scope, "ident": client.credential.prefix}


class NewestFirstCursorPagination(pagination.CursorPagination):
    """For logs: stable under inserts, no COUNT(*), newest first."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class ErrorsSerializer(serializers.Serializer):
    """400 and 409: ``{"errors": {"field": ["message", ...]}}`` (``__all__`` for the whole)."""

    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]  # a field, not the property


class DetailSerializer(serializers.Serializer):
    """Other errors (401, 403, 404, 413, 429): ``{"detail": "message"}``."""

    detail = serializers.CharField()


# Responses every endpoint documents the same way.
UNAUTHENTICATED = OpenApiResponse(
    DetailSerializer, description="Missing, invalid or revoked API key."
)
NOT_A_SCHOOL_KEY = OpenApiResponse(DetailSerializer, description="Not a school's API key.")


def _field_map(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            ("__all__" if key == "non_field_errors" else str(key)): _messages(value)
            for key, value in detail.items()
        }
    return {"__all__": _messages(detail)}


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, list):
        out: list[str] = []
        for item in detail:
            out.extend(_messages(item) if isinstance(item, list | dict) else [str(item)])
        return out
    if isinstance(detail, dict):
        return [
            f"{key}: {message}" for key, value in detail.items() for message in _messages(value)
        ]
    return [str(detail)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Every error as JSON: validation errors as a field map, the rest as ``detail``."""
    if isinstance(exc, DjangoValidationError):
        # Services' errors; a conflict (a key already used, an event already published) says so
        # with its class's http_status.
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        code = getattr(exc, "http_status", status.HTTP_400_BAD_REQUEST)
        return Response({"errors": detail}, status=code)
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            {"detail": "Something went wrong on our side; it has been logged."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"errors": _field_map(exc.detail)}
    return response


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/ answer JSON, like the rest of the API."""
    return JsonResponse({"detail": "Not found."}, status=404)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "schools.authentication.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A school's API key (whk_...) or, for publishing events, the platform's key "
                "(whp_...): `Authorization: Bearer <key>`."
            ),
        }
