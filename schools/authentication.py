"""API authentication: ``Authorization: Bearer <key>`` with a school's or the platform's key.

Failed attempts are counted per client address (``schools.throttles``: ``REMOTE_ADDR``, or
behind ``WEBHOOKS_TRUSTED_PROXIES`` proxies the address they saw); after
``WEBHOOKS_AUTH_FAILURES_PER_MINUTE`` failures within a minute of the first, the address gets
429 for every invalid key until that minute is over. A valid key is always let through, so
clients sharing an address with someone guessing keys are not locked out. The counters live in
the default cache: ``DJANGO_CACHE_URL`` (Redis) makes every process count together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey, PlatformKey, School
from .selectors import credential_find
from .services import credential_touch
from .throttles import client_address, failure_record, failures_wait

AUTH_FAILURES_SCOPE = "api-auth"
AUTH_FAILURES_WINDOW_SECONDS = 60.0


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


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey | PlatformKey] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        scheme, _separator, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed(
                _("Use the header Authorization: Bearer <API key>.")
            )
        credential = credential_find(key=key.strip())
        if credential is None:
            idents = [client_address(request)]
            limit = int(settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE)
            window = AUTH_FAILURES_WINDOW_SECONDS
            if (
                failure_record(scope=AUTH_FAILURES_SCOPE, idents=idents, window_seconds=window)
                > limit
            ):
                wait = failures_wait(
                    scope=AUTH_FAILURES_SCOPE, idents=idents, limit=limit, window_seconds=window
                )
                raise exceptions.Throttled(
                    wait=wait or window,
                    detail=_("Too many failed authentications from this address; try again later."),
                )
            raise exceptions.AuthenticationFailed(_("The API key is invalid or has been revoked."))
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
