"""API authentication: ``Authorization: Bearer <key>`` with a school's or the platform's key.

Failed attempts are counted per client address (``WEBHOOKS_TRUSTED_PROXIES`` says how many
proxies' X-Forwarded-For entries to look through); past ``WEBHOOKS_AUTH_FAILURES_PER_MINUTE`` in
a minute the address gets 429 for every invalid key until the minute is over. A valid key is
always let through, so clients sharing an address with someone guessing keys are not locked out.
The counters live in Django's cache: set ``DJANGO_CACHE_URL`` to share them between processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, throttling
from rest_framework.request import Request

from .models import ApiKey, PlatformKey, School
from .selectors import credential_find
from .services import credential_touch


@dataclass(frozen=True)
class ApiClient:
    """Who is calling the API: a school's integration, or (``school`` None) the platform."""

    credential: ApiKey | PlatformKey
    school: School | None

    is_authenticated = True
    is_anonymous = False

    @property
    def is_platform(self) -> bool:
        return self.school is None


def _failures_key(request: Request) -> str:
    address = throttling.BaseThrottle().get_ident(request)
    return f"api-auth-failures:{address}:{int(time.time() // 60)}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey | PlatformKey] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed("Use the header Authorization: Bearer <API key>.")
        credential = credential_find(key=key.strip())
        if credential is None:
            failures_key = _failures_key(request)
            if cache.get(failures_key, 0) >= settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE:
                raise exceptions.Throttled(
                    wait=60 - time.time() % 60,
                    detail="Too many failed authentications from this address; try again later.",
                )
            cache.add(failures_key, 0, timeout=120)
            cache.incr(failures_key)
            raise exceptions.AuthenticationFailed("The API key is invalid or has been revoked.")
        credential_touch(credential=credential)
        school = credential.school if isinstance(credential, ApiKey) else None
        return ApiClient(credential=credential, school=school), credential

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


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
