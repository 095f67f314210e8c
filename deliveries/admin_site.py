"""The admin site: the stock one, whose home page answers "is everything fine?" for the user's
schools: how deliveries went (per hour over 24 hours, per day over 7 days), which webhooks are
failing or disabled and what to do about each, and the slowest receivers.

It belongs to the deliveries app because its home page is an overview of how deliveries go.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy

from common.admin_lists import CheckedListAdmin
from schools.forms import AdminLoginForm
from schools.selectors import school_ids_visible_to
from subscriptions.selectors import subscriptions_needing_attention

from .admin_charts import timeline_chart
from .explanations import failure_explain
from .selectors import deliveries_timeline, receivers_slowest, subscriptions_last_failure

# The home page's sections, most used first; Celery's scheduler comes last, for superusers only.
APP_ORDER = ["subscriptions", "deliveries", "events", "audit", "schools", "auth"]
SUPERUSER_ONLY_APPS = {"django_celery_beat"}
# The days before today (and, for users who see several schools, the slowest receivers) are
# read again at most this often; the last 24 hours, the failing and disabled webhooks, always.
HOME_CACHE_SECONDS = 120
# The webhooks of each kind the home page names (disabled, failing, paused); it counts them all.
HOME_WEBHOOKS_LISTED = 20


class WebhooksAdminSite(admin.AdminSite):
    site_header = gettext_lazy("School webhooks")
    site_title = gettext_lazy("School webhooks")
    index_title = gettext_lazy("Overview")
    site_url = None  # "/" is this admin: no "View site" link
    login_form = AdminLoginForm  # failed logins are limited (schools/forms.py)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """Django's login page; 429 while the address or the username is locked out."""
        response: HttpResponse = super().login(request, extra_context)
        form = getattr(response, "context_data", None) or {}
        form = form.get("form")
        if form is not None and form.is_bound and form.has_error("__all__", "throttled"):
            response.status_code = 429
        return response

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        """Every list, Django's own (users, groups) and Celery's scheduler's included, answers a
        query string it cannot apply with a message instead of a 500 (``CheckedListAdmin``)."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, CheckedListAdmin):
            admin_class = type(admin_class.__name__, (CheckedListAdmin, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        if not request.user.is_superuser:
            apps = [app for app in apps if app["app_label"] not in SUPERUSER_ONLY_APPS]

        def position(app: dict[str, Any]) -> int:
            label = app["app_label"]
            return APP_ORDER.index(label) if label in APP_ORDER else len(APP_ORDER)

        return sorted(apps, key=position)

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        user = request.user
        school_ids = school_ids_visible_to(user=user)
        context: dict[str, Any] = {"overview": False}
        if user.has_perm("deliveries.view_delivery"):
            zone = timezone.get_current_timezone()
            # The slowest receivers of one school are cheap to read afresh; every school's
            # (support staff, superusers: the whole log) are kept a little while.
            several = school_ids is None or len(school_ids) > 1
            slowest_cache_seconds = HOME_CACHE_SECONDS if several else 0
            context.update(
                {
                    "overview": True,
                    "chart": timeline_chart(
                        deliveries_timeline(
                            school_ids=school_ids, zone=zone, cache_seconds=HOME_CACHE_SECONDS
                        )
                    ),
                    "slowest": receivers_slowest(
                        school_ids=school_ids, cache_seconds=slowest_cache_seconds
                    ),
                    "timeout_ms": int(settings.WEBHOOKS_TIMEOUT_SECONDS * 1000),
                }
            )
        if user.has_perm("subscriptions.view_subscription"):
            attention = subscriptions_needing_attention(
                school_ids=school_ids, limit=HOME_WEBHOOKS_LISTED
            )
            failures = subscriptions_last_failure(
                subscription_ids=[s.pk for s in attention.failing]
            )
            context.update(
                {
                    "overview": True,
                    "webhooks_failing": [
                        (
                            webhook,
                            failures.get(webhook.pk),
                            _explain(failures.get(webhook.pk)),
                        )
                        for webhook in attention.failing
                    ],
                    "webhooks_disabled": attention.disabled,
                    "webhooks_paused": attention.paused,
                    # The headline says how many there are; the lists name the first few.
                    "disabled_count": attention.disabled_count,
                    "failing_count": attention.failing_count,
                    "paused_count": attention.paused_count,
                    "disabled_more": attention.disabled_count - len(attention.disabled),
                    "failing_more": attention.failing_count - len(attention.failing),
                    "paused_more": attention.paused_count - len(attention.paused),
                    "can_resume": user.has_perm("subscriptions.change_subscription"),
                    "can_enable": user.has_perm("subscriptions.change_subscription"),
                    "can_recover": user.has_perm("deliveries.retrigger_delivery"),
                    "several_schools": school_ids is None or len(school_ids) > 1,
                }
            )
        return super().index(request, extra_context={**context, **(extra_context or {})})


def _explain(delivery: Any) -> str:
    if delivery is None:
        return ""
    return failure_explain(
        error_kind=delivery.last_error_kind,
        status=delivery.last_response_status,
        timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
        retried=delivery.status == "pending",
    )
