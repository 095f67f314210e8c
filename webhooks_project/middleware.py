"""What is answered before any other middleware reads the request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from deliveries.views import health


class HealthProbeMiddleware:
    """``/health/`` for load balancers and monitors, which probe an instance by its address
    (``Host: 10.0.0.5:8000``, or ``127.0.0.1:8000`` on the host itself) rather than by the site's
    name: answered first, before ``CommonMiddleware`` refuses a host not in ``ALLOWED_HOSTS``
    (400) and ``SecurityMiddleware`` redirects plain HTTP. The view builds no URL from the
    Host header and reveals counts only."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/health/":
            return health(request)
        return self.get_response(request)
