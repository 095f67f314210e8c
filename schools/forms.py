"""The admin's login form, with failed logins limited (``schools.throttles``).

Past ``WEBHOOKS_ADMIN_LOGIN_FAILURES`` wrong passwords from one client address, or for one
username, within ``WEBHOOKS_ADMIN_LOGIN_WINDOW_SECONDS`` of the first, every login of that
address or username is refused until the window is over, the right password included: guessing
is capped at that many tries per window whether the guesser uses one address or many.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import ngettext

from .throttles import client_address, failure_record, failures_wait

LOGIN_FAILURES_SCOPE = "admin-login"


class AdminLoginForm(AdminAuthenticationForm):
    """Django's admin login form; refuses with ``code="throttled"`` past the limit."""

    def _idents(self) -> list[str]:
        username = str(self.cleaned_data.get("username") or "").strip().lower()
        address = client_address(self.request) if self.request is not None else ""
        return [f"address:{address}", f"user:{username}"]

    def _throttled(self, wait: float) -> ValidationError:
        minutes = max(1, math.ceil(wait / 60))
        return ValidationError(
            ngettext(
                "Too many failed logins for this account or from this address. Try again in "
                "%(minutes)s minute.",
                "Too many failed logins for this account or from this address. Try again in "
                "%(minutes)s minutes.",
                minutes,
            )
            % {"minutes": minutes},
            code="throttled",
        )

    def clean(self) -> dict[str, Any]:
        limit = int(settings.WEBHOOKS_ADMIN_LOGIN_FAILURES)
        window = float(settings.WEBHOOKS_ADMIN_LOGIN_WINDOW_SECONDS)
        idents = self._idents()
        wait = failures_wait(
            scope=LOGIN_FAILURES_SCOPE, idents=idents, limit=limit, window_seconds=window
        )
        if wait:
            raise self._throttled(wait)
        try:
            return super().clean()
        except ValidationError as exc:
            if exc.code == "invalid_login":
                count = failure_record(
                    scope=LOGIN_FAILURES_SCOPE, idents=idents, window_seconds=window
                )
                if count > limit:
                    raise self._throttled(window) from exc
            raise
