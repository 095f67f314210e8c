"""The admin site: the stock one, with the webhooks that need attention on its home page.

It belongs to the deliveries app because its home page is an overview of how deliveries go.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from schools.forms import AdminLoginForm
from schools.selectors import school_ids_visible_to
from subscriptions.selectors import subscriptions_needing_attention


class WebhooksAdminSite(admin.AdminSite):
    site_header = "School webhooks"
    site_title = "School webhooks"
    index_title = "Webhooks administration"
    login_form = AdminLoginForm  # failed logins are limited (schools/forms.py)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """Django's login page; 429 while the address or the username is locked out."""
        response: HttpResponse = super().login(request, extra_context)
        form = getattr(response, "context_data", None) or {}
        form = form.get("form")
        if form is not None and form.is_bound and form.has_error("__all__", "throttled"):
            response.status_code = 429
        return response

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        attention = []
        if request.user.has_perm("subscriptions.view_subscription"):
            school_ids = school_ids_visible_to(user=request.user)
            attention = list(subscriptions_needing_attention(school_ids=school_ids)[:20])
        context = {
            "webhooks_failing": [s for s in attention if s.is_active],
            "webhooks_disabled": [s for s in attention if not s.is_active],
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)
