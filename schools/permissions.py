"""Who may call an API endpoint: a school's key, the platform's key, and per-key throttles."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy
from rest_framework import exceptions, permissions, throttling
from rest_framework.request import Request
from rest_framework.settings import api_settings

from .authentication import ApiClient
from .models import School


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

    message = gettext_lazy("This endpoint needs a school's API key.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(getattr(request.user, "school", None))


class IsPlatformClient(permissions.BasePermission):
    message = gettext_lazy("This endpoint needs the platform's key.")

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
