"""The webhooks pages: the overview (edudip), the settings page (BrainCert) with Send Test, the
signing secret (reveal, copy, rotate) and recovering failed deliveries.

Reads come from selectors, writes go through the services; every page is scoped to the user's
schools by ``SchoolScopedAdmin``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.timesince import timesince

from common.admin_lists import DropdownFilter
from deliveries.display import STATUS_COLOURS, attempt_shown, status_badge, url_query_mask
from deliveries.explanations import failure_explain
from deliveries.models import Delivery, DeliveryStatus
from deliveries.selectors import (
    SubscriptionDeliveryStats,
    deliveries_failed_count,
    subscriptions_delivery_stats,
)
from deliveries.services import deliveries_recover, delivery_test_send
from events.models import EventType
from schools.admin_scoping import (
    SchoolListFilter,
    SchoolScopedAdmin,
    administers,
    administers_all_visible,
    schools_visible,
)

from .crypto import SecretUnreadable
from .forms import RecoverForm, SendTestForm, SubscriptionForm
from .models import SigningSecret, Subscription
from .selectors import (
    signing_secret_current,
    subscription_event_types,
    subscription_ids_receiving,
    subscription_secret_values,
)
from .services import (
    subscription_body_preview,
    subscription_delete,
    subscription_enable,
    subscription_save,
    subscription_secret_rotate,
)

logger = logging.getLogger(__name__)

MASK = "••••••••"


def _stats(subscription: Any) -> SubscriptionDeliveryStats:
    """The delivery figures ``WebhookChangeList`` put on a row of the list."""
    stats: SubscriptionDeliveryStats = subscription.delivery_stats
    return stats


class WebhookStateFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("healthy", "Healthy"), ("failing", "Failing"), ("disabled", "Disabled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "healthy":
            return queryset.filter(is_active=True, failing_since__isnull=True)
        if value == "failing":
            return queryset.filter(is_active=True, failing_since__isnull=False)
        if value == "disabled":
            return queryset.filter(is_active=False)
        return queryset


class TopicFilter(DropdownFilter):
    """Webhooks that receive an event type (directly or through a pattern)."""

    title = "topic"
    parameter_name = "topic"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        keys = EventType.objects.filter(deprecated=False).order_by("key")
        return [(key, key) for key in keys.values_list("key", flat=True)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(
            pk__in=subscription_ids_receiving(subscriptions=queryset, event_type=value)
        )


class WebhookChangeList(ChangeList):
    """The webhooks list, with each row's delivery figures read for the whole page at once."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        stats = subscriptions_delivery_stats(
            subscription_ids=[subscription.pk for subscription in self.result_list]
        )
        for subscription in self.result_list:
            subscription.delivery_stats = stats.get(subscription.pk, SubscriptionDeliveryStats())


@admin.register(Subscription)
class SubscriptionAdmin(SchoolScopedAdmin):
    form = SubscriptionForm
    list_display = [
        "name",
        "url_display",
        "topics_display",
        "content_type_display",
        "state_display",
        "last_delivery",
        "health",
    ]
    list_filter = [WebhookStateFilter, TopicFilter, "content_type", SchoolListFilter]
    list_select_related = ["school"]
    search_fields = ["name", "url"]
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = [
        "school_display",
        "url_masked_display",
        "signing_secret",
        "signing_secret_hidden",
        "state_display",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "created_at",
        "updated_at",
        "topics_display",
        "basic_auth_display",
        "custom_headers_display",
        "deliveries_link",
    ]
    actions = ["send_test", "enable_selected", "rotate_secrets"]

    class Media:
        js = ["subscriptions/webhook_form.js"]
        css = {"all": ["subscriptions/webhook_form.css"]}

    # --- Permissions ----------------------------------------------------------------------

    def has_send_test_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("subscriptions.send_test_subscription") and self._obj_visible(
            request, obj
        )

    def has_manage_secret_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The permission, and being an admin of this webhook's school: seeing a school (as
        # support staff see every school) never opens its secrets.
        allowed = request.user.has_perm("subscriptions.manage_secret_subscription")
        if obj is None:
            return allowed and self._obj_visible(request, obj)
        return allowed and self._obj_visible(request, obj) and administers(request, obj.school_id)

    def has_recover_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("deliveries.retrigger_delivery") and self._obj_visible(
            request, obj
        )

    # --- The list -------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WebhookChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if self.sees_several_schools(request):
            columns.insert(1, "school")
        if not administers_all_visible(request):
            columns = ["url_masked_display" if c == "url_display" else c for c in columns]
        return columns

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        fields = list(super().get_search_fields(request))
        if self.sees_several_schools(request):
            fields.append("school__name")
        return fields

    @admin.display(description="URL", ordering="url")
    def url_display(self, obj: Subscription) -> str:
        url = obj.url if len(obj.url) <= 45 else obj.url[:44] + "…"
        return format_html('<span title="{}">{}</span>', obj.url, url)

    @admin.display(description="URL", ordering="url")
    def url_masked_display(self, obj: Subscription) -> str:
        """The URL with its query values masked (``?token=…``), for support staff."""
        masked = url_query_mask(obj.url)
        url = masked if len(masked) <= 45 else masked[:44] + "…"
        return format_html('<span title="{}">{}</span>', masked, url)

    @admin.display(description="Topics")
    def topics_display(self, obj: Subscription) -> str:
        return format_html_join(" ", "<code>{}</code>", ((topic,) for topic in obj.topics))

    @admin.display(description="Type", ordering="content_type")
    def content_type_display(self, obj: Subscription) -> str:
        return obj.content_type.upper()

    @admin.display(description="Status", ordering="is_active")
    def state_display(self, obj: Subscription) -> str:
        if not obj.is_active:
            return format_html(
                '<img src="{}" alt=""> <strong class="webhook-state-disabled">Disabled</strong>'
                '<br><span class="webhook-reason">{}</span>',
                static("admin/img/icon-no.svg"),
                obj.disabled_reason or "Turned off.",
            )
        if obj.failing_since:
            return format_html(
                '<img src="{}" alt=""> <strong class="webhook-state-failing" style="color: {};">'
                'Failing</strong><br><span class="webhook-reason">for {}</span>',
                static("admin/img/icon-alert.svg"),
                STATUS_COLOURS[DeliveryStatus.FAILED],
                timesince(obj.failing_since),
            )
        return format_html('<img src="{}" alt=""> Active', static("admin/img/icon-yes.svg"))

    @admin.display(description="Last delivery")
    def last_delivery(self, obj: Subscription) -> str:
        stats = _stats(obj)
        if not stats.last_status:
            return "—"
        code = f" ({stats.last_response_status})" if stats.last_response_status else ""
        when = f"{timesince(stats.last_at)} ago" if stats.last_at else ""
        return format_html("{}{}<br><small>{}</small>", status_badge(stats.last_status), code, when)

    @admin.display(description="Health")
    def health(self, obj: Subscription) -> str:
        """Failures in the last 24 hours (linked to them) over the success rate of 7 days."""
        return format_html(
            '<span class="webhook-failures">{}</span><br>{}',
            self.failures_24h(obj),
            self.success_rate_7d(obj),
        )

    def failures_24h(self, obj: Subscription) -> str:
        count = _stats(obj).failures_24h
        if not count:
            return "0 failures / 24 h"
        since = (timezone.localtime() - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        query = urlencode(
            {"subscription": str(obj.pk), "status": "failing", "created_at_from": since}
        )
        return format_html(
            '<a href="{}?{}" style="color: {}; font-weight: bold;">{} failure{}</a> / 24 h',
            reverse("admin:deliveries_delivery_changelist"),
            query,
            STATUS_COLOURS[DeliveryStatus.FAILED],
            count,
            "" if count == 1 else "s",
        )

    def success_rate_7d(self, obj: Subscription) -> str:
        stats = _stats(obj)
        rate = stats.success_rate_7d
        if rate is None:
            return format_html('<span class="webhook-reason">{}</span>', "nothing sent in 7 d")
        percent = round(rate * 100)
        colour = "#2e7d32" if rate >= 0.95 else "#9a6700" if rate >= 0.8 else "#c62828"
        return format_html(
            '<span class="webhook-rate" title="{} delivered, {} failed">'
            '<span class="webhook-rate-bar"><span style="width: {}%; background: {};"></span>'
            "</span> {}% / 7 d</span>",
            stats.delivered_7d,
            stats.failed_7d,
            percent,
            colour,
            percent,
        )

    # --- The settings page ----------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        several = self.sees_several_schools(request)
        secret = (
            "signing_secret"
            if self.has_manage_secret_permission(request, obj)
            else "signing_secret_hidden"
        )
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only (support staff): secrets and header values are not shown.
            return [
                (
                    None,
                    {"fields": ["school_display", "name", "url_masked_display", "topics_display"]},
                ),
                ("Delivery", {"fields": ["content_type", "basic_auth_display"]}),
                ("Custom headers", {"fields": ["custom_headers_display"]}),
                ("Webhook body", {"fields": ["body_template"]}),
                ("Signature", {"fields": [secret, "sign_ed25519"]}),
                ("Status", {"fields": ["state_display", "failing_since", "deliveries_link"]}),
            ]
        main = ["name", "url", "topics", "content_type"]
        if obj is None:
            main.insert(0, "school")
        elif several:
            main.insert(0, "school_display")
        fieldsets: list[tuple[Any, Any]] = [
            (None, {"fields": main}),
            (
                "Basic authentication",
                {"fields": ["basic_auth_enabled", "basic_auth_username", "basic_auth_password"]},
            ),
            ("Custom headers", {"fields": ["custom_headers"]}),
            ("Webhook body", {"fields": ["body_template"]}),
            (
                "Signature",
                {"fields": ["sign_ed25519"] if obj is None else [secret, "sign_ed25519"]},
            ),
        ]
        status = ["is_active"]
        if obj is not None:
            status += ["state_display", "failing_since", "deliveries_link", "created_at"]
        fieldsets.append(("Status", {"fields": status}))
        return fieldsets

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # Several schools (superusers, admins of a group of schools): search them as you type.
        return ["school"] if self.sees_several_schools(request) else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        schools = list(schools_visible(request)[:2])
        if len(schools) == 1:
            initial.setdefault("school", schools[0].pk)
        return initial

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "school" and not self.sees_several_schools(request):
            kwargs["widget"] = forms.HiddenInput()  # their one school (initial data)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="School")
    def school_display(self, obj: Subscription) -> str:
        return obj.school.name

    @admin.display(description="Basic authentication")
    def basic_auth_display(self, obj: Subscription) -> str:
        if not obj.basic_auth_enabled:
            return "No"
        return format_html("Yes, as <code>{}</code> (password hidden)", obj.basic_auth_username)

    @admin.display(description="Custom headers")
    def custom_headers_display(self, obj: Subscription) -> str:
        if not obj.custom_headers:
            return "—"
        return format_html_join(
            "\n", "<div><code>{}: {}</code></div>", ((name, MASK) for name in obj.custom_headers)
        )

    @admin.display(description="Signing secret")
    def signing_secret_hidden(self, obj: Subscription) -> str:
        return "Hidden: only the school's admins can see and rotate the signing secret."

    @admin.display(description="Signing secret")
    def signing_secret(self, obj: Subscription) -> str:
        secret_url = reverse("admin:subscriptions_subscription_secret", args=[obj.pk])
        rotate_url = reverse("admin:subscriptions_subscription_rotate_secret", args=[obj.pk])
        return format_html(
            '<span class="webhook-secret" data-url="{}"><code class="webhook-secret-value">'
            "whsec_{}</code> "
            '<a class="button webhook-secret-reveal" href="{}">Reveal</a> '
            '<a class="button webhook-secret-copy" href="#" hidden>Copy</a> '
            '<a class="button webhook-secret-rotate" href="{}">Rotate…</a></span>'
            '<div class="help">Receivers verify the webhook-signature header (Standard Webhooks '
            "v1, HMAC-SHA256) with it.</div>",
            secret_url,
            MASK * 3,
            secret_url,
            rotate_url,
        )

    @admin.display(description="Deliveries")
    def deliveries_link(self, obj: Subscription) -> str:
        url = reverse("admin:deliveries_delivery_changelist")
        return format_html(
            '<a href="{}?subscription={}">Delivery log of this webhook</a>', url, obj.pk
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        subscription = self.get_object(request, unquote(object_id))
        send_test_form = SendTestForm(
            event_types=subscription_event_types(subscription=subscription),
            auto_id="id_send_test_%s",
        )
        # Submitted with the Send Test form outside the settings form (HTML form attribute).
        send_test_form.fields["event_type"].widget.attrs["form"] = "send-test-form"
        extra = {
            "send_test_form": send_test_form,
            "can_send_test": self.has_send_test_permission(request, subscription),
            "can_recover": self.has_recover_permission(request, subscription),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        if change and "is_active" in form.changed_data and obj.is_active:
            # Turned back on: forget why it was off and its failure streak.
            obj.disabled_reason, obj.disabled_at, obj.failing_since = "", None, None
        subscription_save(
            subscription=obj, basic_auth_password=form.cleaned_data.get("basic_auth_password")
        )

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """What deleting webhooks removes, as counts: a webhook takes its delivery log with it
        (``subscription_delete``), which is never listed row by row nor deleted on its own."""
        subscriptions = list(objs)
        ids = [subscription.pk for subscription in subscriptions]
        counts = {
            "webhooks": len(subscriptions),
            "deliveries, with their attempts": Delivery.objects.filter(
                subscription_id__in=ids
            ).count(),
        }
        return [str(subscription) for subscription in subscriptions], counts, set(), []

    def delete_model(self, request: HttpRequest, obj: Subscription) -> None:
        subscription_delete(subscription=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        for subscription in queryset:
            subscription_delete(subscription=subscription)

    def response_add(
        self, request: HttpRequest, obj: Subscription, post_url_continue: str | None = None
    ) -> HttpResponse:
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # BrainCert's flow: save, then Send Test. Stay on the webhook's page.
        self.message_user(
            request,
            f"The webhook “{obj.name}” was added. Its signing secret is below; "
            "use Send Test to try it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:subscriptions_subscription_change", args=[obj.pk])
        )

    # --- Actions --------------------------------------------------------------------------

    @admin.action(description="Send Test to the selected webhook", permissions=["send_test"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> Any:
        subscriptions = list(queryset[:2])
        if len(subscriptions) != 1:
            self.message_user(request, "Select one webhook to send a test to.", messages.WARNING)
            return None
        return HttpResponseRedirect(
            reverse("admin:subscriptions_subscription_send_test", args=[subscriptions[0].pk])
        )

    @admin.action(description="Re-enable the selected webhooks", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = 0
        for subscription in queryset:
            subscription_enable(subscription=subscription)
            count += 1
        self.message_user(request, f"{count} webhooks re-enabled.")

    @admin.action(
        description="Rotate the signing secrets of the selected webhooks",
        permissions=["manage_secret"],
    )
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = 0
        for subscription in queryset:
            subscription_secret_rotate(subscription=subscription)
            count += 1
        self.message_user(
            request,
            f"{count} signing secrets rotated; the previous ones keep signing for "
            f"{_grace_text()}, so receivers can switch.",
        )

    # --- Pages of one webhook -------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_view), name="subscriptions_subscription_preview"),
            path(
                "<path:object_id>/send-test/",
                view(self.send_test_view),
                name="subscriptions_subscription_send_test",
            ),
            path(
                "<path:object_id>/secret/",
                view(self.secret_view),
                name="subscriptions_subscription_secret",
            ),
            path(
                "<path:object_id>/rotate-secret/",
                view(self.rotate_secret_view),
                name="subscriptions_subscription_rotate_secret",
            ),
            path(
                "<path:object_id>/recover/",
                view(self.recover_view),
                name="subscriptions_subscription_recover",
            ),
            *super().get_urls(),
        ]

    def _page_context(self, request: HttpRequest, subscription: Subscription, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": subscription.name,
            "opts": self.opts,
            "original": subscription,
            "has_view_permission": True,
            "change_url": reverse(
                "admin:subscriptions_subscription_change", args=[subscription.pk]
            ),
        }

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send the chosen topic's sample now through the real delivery path; show the answer."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_send_test_permission(request, subscription):
            raise PermissionDenied
        event_types = subscription_event_types(subscription=subscription)
        form = SendTestForm(request.POST or None, event_types=event_types)
        context = self._page_context(request, subscription, "Send Test")
        context["target_url"] = (
            subscription.url
            if self.has_manage_secret_permission(request, subscription)
            else url_query_mask(subscription.url)
        )
        if request.method == "POST" and form.is_valid():
            try:
                attempt = delivery_test_send(
                    subscription=subscription, event_type=form.cleaned_data["event_type"]
                )
            except ValidationError as exc:
                context["errors"] = exc.messages
            else:
                delivery = attempt.delivery
                secrets = (
                    None
                    if self.has_manage_secret_permission(request, subscription)
                    else subscription_secret_values(subscription=subscription)
                )
                shown = attempt_shown(attempt, secrets=secrets)
                context.update(
                    {
                        "attempt": attempt,
                        "shown": shown,
                        "event_type": form.cleaned_data["event_type"],
                        "request_headers": shown["request_headers"],
                        "request_body": bytes(delivery.body).decode("utf-8", errors="replace"),
                        "explanation": failure_explain(
                            error_kind=attempt.error_kind,
                            status=attempt.response_status,
                            timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
                        ),
                        "delivery_url": reverse(
                            "admin:deliveries_delivery_change", args=[delivery.pk]
                        ),
                    }
                )
        context["form"] = form
        return TemplateResponse(request, "admin/subscriptions/subscription/send_test.html", context)

    def secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The signing secret in clear, on a POST (never in a page by default, never cached)."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_manage_secret_permission(request, subscription):
            raise PermissionDenied
        secret = error = None
        if request.method == "POST":
            try:
                secret = signing_secret_current(subscription=subscription)
            except (SecretUnreadable, SigningSecret.DoesNotExist) as exc:
                error = str(exc)
            else:
                logger.info(
                    "Signing secret of webhook %s shown to user %s",
                    subscription.pk,
                    request.user.pk,
                )
            if "application/json" in request.headers.get("Accept", ""):
                if error:
                    return JsonResponse({"error": error}, status=409)
                return JsonResponse({"secret": secret})
        context = self._page_context(request, subscription, "Signing secret")
        context.update({"secret": secret, "error": error})
        return TemplateResponse(request, "admin/subscriptions/subscription/secret.html", context)

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then rotate: a new secret signs at once, the old ones during the grace."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_manage_secret_permission(request, subscription):
            raise PermissionDenied
        if request.method == "POST":
            subscription_secret_rotate(subscription=subscription)
            self.message_user(
                request,
                "A new signing secret signs from now on; the previous one keeps signing for "
                f"{_grace_text()}. Reveal the new one below and give it to the receiver.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
            )
        context = self._page_context(request, subscription, "Rotate the signing secret")
        context["grace"] = _grace_text()
        return TemplateResponse(
            request, "admin/subscriptions/subscription/rotate_secret.html", context
        )

    def recover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Re-send every failed delivery of the webhook since a time (after an outage)."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_recover_permission(request, subscription):
            raise PermissionDenied
        default_since = subscription.failing_since or timezone.now() - dt.timedelta(days=1)
        form = RecoverForm(
            request.POST or None,
            initial={"since": timezone.localtime(default_since).replace(second=0, microsecond=0)},
        )
        if request.method == "POST" and form.is_valid():
            since = form.cleaned_data["since"]
            count = deliveries_recover(subscription=subscription, since=since)
            message = (
                f"{count} failed deliveries since {timezone.localtime(since):%Y-%m-%d %H:%M} "
                "are being sent again."
            )
            if not subscription.is_active:
                message += " The webhook is disabled, so they fail again: re-enable it first."
            self.message_user(
                request, message, messages.SUCCESS if subscription.is_active else messages.WARNING
            )
            return HttpResponseRedirect(
                reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
            )
        since = form.cleaned_data["since"] if form.is_bound and form.is_valid() else default_since
        context = self._page_context(request, subscription, "Recover failed deliveries")
        context.update(
            {
                "form": form,
                "failed_count": deliveries_failed_count(
                    subscription_id=subscription.pk, since=since
                ),
                "since": since,
            }
        )
        return TemplateResponse(request, "admin/subscriptions/subscription/recover.html", context)

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The body a receiver would get for a topic's sample, as JSON (for the live preview)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        school_id = request.POST.get("school", "")
        schools = schools_visible(request)
        school = schools.filter(pk=int(school_id)).first() if school_id.isdigit() else None
        if school is None:
            return JsonResponse({"error": "Choose the school first."}, status=400)
        try:
            body = subscription_body_preview(
                body_template=request.POST.get("body_template", ""),
                content_type=request.POST.get("content_type", "json"),
                event_type=request.POST.get("event_type", ""),
                school=school,
            )
        except ValidationError as exc:
            return JsonResponse({"error": " ".join(exc.messages)}, status=400)
        return JsonResponse({"body": body})


def _grace_text() -> str:
    hours = settings.WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS / 3600
    return f"{hours:g} hours"
