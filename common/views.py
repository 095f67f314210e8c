"""Error pages for the whole site."""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger(__name__)

# Seconds a client is told to wait before trying again while the database is unreachable.
RETRY_AFTER_SECONDS = 5


def database_unreachable(exc: BaseException | None) -> bool:
    """Whether an exception means the database cannot be reached (a restart, a failover)."""
    return isinstance(exc, OperationalError | InterfaceError)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with ``Retry-After``: JSON under /api/, a short page elsewhere."""
    message = _(
        "The service is briefly unavailable (its database cannot be reached); try again in a "
        "few seconds."
    )
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a database that cannot be reached is a 503 (the client should retry), not
    a 500 (a fault of ours). Django calls this while handling the exception, from any view or
    middleware, so ``sys.exc_info()`` says what it was. An outage is logged in one line per
    request, not with the traceback Django writes for a fault (a scrape or a page every few
    seconds would fill the log with the same one)."""
    exc = sys.exc_info()[1]
    if database_unreachable(exc):
        logger.warning(
            "%s %s refused, the database is unreachable: %s",
            request.method,
            request.path,
            first_line(exc),
        )
        response = unavailable_response(request)
        response._has_been_logged = True  # type: ignore[attr-defined]  # by Django's log_response
        return response
    return django_server_error(request)


def first_line(exc: BaseException | None) -> str:
    """An exception's class and the first line of its message (psycopg adds hints below it)."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
