"""The first check every request passes, for the API and the admin alike.

- A body larger than the path allows is answered 413 before anything reads it: the API's
  limit is ``WEBHOOKS_INGEST_MAX_BYTES``, the admin's Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
- A query-string parameter (and, outside the API, a form field) whose name or value holds text
  that cannot be stored (NUL, a lone surrogate) is answered 400 naming the parameter, instead of
  reaching a filter and failing in the database. So is a request with more parameters than
  Django reads (``DATA_UPLOAD_MAX_NUMBER_FIELDS``): a JSON 400 on the API, not Django's page.
- API answers are never stored by caches (``Cache-Control: no-store``): they carry a school's
  data, and some carry a signing secret.

JSON bodies are checked by the API's parser (``common.parsers.JSONParser``) with the same rules
(``webhook_engine.inputs``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import translation
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _

from webhook_engine.inputs import query_problems

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def request_body_limit(path: str) -> int:
    """The largest body a request to ``path`` may carry, in bytes."""
    if path.startswith("/api/"):
        return int(settings.WEBHOOKS_INGEST_MAX_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440)


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    message = _("The request body is larger than %(limit)s bytes.") % {"limit": limit}
    if _is_api(request):
        return JsonResponse({"detail": message}, status=413)
    return HttpResponse(
        format_html("<h1>{}</h1><p>{}</p>", _("Request too large (413)"), message), status=413
    )


def _bad_input(request: HttpRequest, problems: list[tuple[str, str]]) -> HttpResponse:
    if _is_api(request):
        errors: dict[str, list[str]] = {}
        for name, message in problems:
            errors.setdefault(name, []).append(message)
        return JsonResponse({"errors": errors}, status=400)
    items = format_html_join("", "<li><code>{}</code>: {}</li>", problems)
    return HttpResponse(
        format_html(
            "<h1>{}</h1><p>{}</p><ul>{}</ul>",
            _("Bad request (400)"),
            _(
                "These parameters cannot be used; remove them from the address or the form and "
                "try again:"
            ),
            items,
        ),
        status=400,
    )


class RequestInputMiddleware:
    """See the module docstring. Placed first, so nothing runs before it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if request.path_info.startswith("/api/v1/"):
            response["Cache-Control"] = "no-store"
        return response

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        """The 413 or 400 for this request, or None. This runs before the locale middleware,
        so a refusal is worded in the language of the request's cookie or Accept-Language."""
        with translation.override(translation.get_language_from_request(request)):
            return self._check(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        limit = request_body_limit(request.path_info)
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > limit:
            return _too_large(request, limit)
        try:
            pairs = [(name, value) for name, values in request.GET.lists() for value in values]
            if (
                not _is_api(request)
                and request.method == "POST"
                and request.content_type in _FORM_TYPES
            ):
                pairs += [
                    (name, value) for name, values in request.POST.lists() for value in values
                ]
        except TooManyFieldsSent:
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            message = _("The request has more than %(limit)s parameters.") % {"limit": limit}
            return _bad_input(request, [("__all__", message)])
        problems = query_problems(pairs)
        if problems:
            return _bad_input(request, problems)
        return None
