"""The admin's language and time zone for each request.

Language: the user's choice (the admin's language menu, kept in Django's language cookie), else
the first language of the browser's ``Accept-Language`` that the admin speaks, else the language
of the user's school, else English. Time zone: the user's school's when they see exactly one
school; UTC otherwise (support staff, superusers), where pages name each row's school's zone.
"""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware.locale import LocaleMiddleware as DjangoLocaleMiddleware
from django.utils import timezone, translation
from django.utils.translation.trans_real import parse_accept_lang_header

from .models import Membership


def _supported(code: str | None) -> str | None:
    if not code:
        return None
    try:
        return translation.get_supported_language_variant(code)
    except LookupError:
        return None


def language_chosen(request: HttpRequest) -> str | None:
    """The language the user chose, or the browser's first one we speak; None for neither."""
    chosen = _supported(request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME))
    if chosen:
        return chosen
    for code, _quality in parse_accept_lang_header(request.META.get("HTTP_ACCEPT_LANGUAGE", "")):
        if code != "*" and (found := _supported(code)):
            return found
    return None


def _user_school(request: HttpRequest) -> tuple[str, str] | None:
    """(language, time zone) of the user's school if they administer exactly one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    rows = list(
        Membership.objects.filter(user=user).values_list("school__language", "school__timezone")[:2]
    )
    return rows[0] if len(rows) == 1 else None


class LocaleMiddleware(DjangoLocaleMiddleware):
    """Django's LocaleMiddleware with the school as the last fallback, and the school's zone."""

    def process_request(self, request: HttpRequest) -> None:
        school = _user_school(request)
        language = language_chosen(request) or _supported(school[0] if school else None)
        language = language or settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        try:
            timezone.activate(zoneinfo.ZoneInfo(school[1]) if school else zoneinfo.ZoneInfo("UTC"))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        response = super().process_response(request, response)
        timezone.deactivate()
        return response
