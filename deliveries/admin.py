"""The delivery log (edudip's failed-delivery details, GitHub's Recent Deliveries): a read-only
list that stays fast at millions of rows, every attempt with its request and answer, and
retrigger (one delivery, or many after a confirmation).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from common.admin_lists import DateRangeFilter, DropdownFilter, EstimatedCountPaginator
from events.models import EventType
from schools.admin_scoping import SchoolListFilter, SchoolScopedAdmin, administers
from subscriptions.models import Subscription
from subscriptions.selectors import subscription_hidden_values
from webhook_engine.signing import message_id

from .display import STATUS_COLOURS, attempt_shown, status_badge, text_scrub, url_query_mask
from .explanations import failure_explain
from .models import Delivery, DeliveryAttempt, DeliveryStatus
from .selectors import delivery_attempts
from .services import deliveries_retrigger, delivery_retrigger

# At most this many deliveries are retriggered by one bulk action (narrow the filters, or use
# "Recover failed deliveries" on the webhook, for more).
RETRIGGER_LIMIT = 1000


def delivery_uuid(term: str) -> uuid.UUID | None:
    """A delivery or event id typed by hand: a UUID, with or without dashes or ``msg_``."""
    try:
        return uuid.UUID(term.strip().removeprefix("msg_"))
    except ValueError:
        return None


class DeliveryStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            *DeliveryStatus.choices,
            ("failing", "Failed, or retrying after a failure"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "failing":
            return queryset.filter(
                Q(status=DeliveryStatus.FAILED)
                | (Q(status=DeliveryStatus.PENDING) & ~Q(last_error_kind=""))
            )
        if value in DeliveryStatus.values:
            return queryset.filter(status=value)
        return queryset


class SubscriptionFilter(DropdownFilter):
    """The webhooks the user may see (the selected one always among the choices)."""

    title = "webhook"
    parameter_name = "subscription"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        visible = model_admin.scope(request, Subscription.objects.select_related("school"))
        several = model_admin.sees_several_schools(request)
        rows = list(visible.order_by("school__name", "name")[:300])
        selected = delivery_uuid(request.GET.get(self.parameter_name, ""))
        if selected and all(row.pk != selected for row in rows):
            rows += list(visible.filter(pk=selected))
        return [
            (str(row.pk), f"{row.school.name} — {row.name}" if several else row.name)
            for row in rows
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        subscription_id = delivery_uuid(self.value() or "")
        return (
            queryset.filter(subscription_id=subscription_id) if subscription_id else queryset.none()
        )


class EventTypeFilter(DropdownFilter):
    """The catalog's event types (not the distinct values of millions of rows)."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (key, key) for key in EventType.objects.order_by("key").values_list("key", flat=True)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(event_type=value) if value else queryset


class TestFilter(admin.SimpleListFilter):
    title = "Send Test"
    parameter_name = "test"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Real deliveries"), ("yes", "Test deliveries")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(is_test=self.value() == "yes")
        return queryset


class CreatedFilter(DateRangeFilter):
    title = "date"
    field_path = "created_at"


_LIST_FIELDS = [
    "id",
    "school",
    "school__name",
    "subscription",
    "subscription__name",
    "event_type",
    "is_test",
    "status",
    "attempts",
    "created_at",
    "next_attempt_at",
    "last_response_status",
    "last_error_kind",
]


@admin.register(Delivery)
class DeliveryAdmin(SchoolScopedAdmin):
    list_display = [
        "created_display",
        "status_display",
        "event_type",
        "subscription_display",
        "attempts",
        "last_response_status",
        "next_attempt_at",
        "test_display",
    ]
    list_display_links = ["created_display"]
    list_filter = [
        DeliveryStatusFilter,
        SubscriptionFilter,
        EventTypeFilter,
        CreatedFilter,
        TestFilter,
        "last_error_kind",
        SchoolListFilter,
    ]
    list_select_related = ["subscription", "school"]
    list_per_page = 100
    search_fields = ["=id", "=event__id"]  # see get_search_results
    search_help_text = "A delivery id, a webhook-id (msg_…) or an event id."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = ["retrigger_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status_display",
                    "webhook_id",
                    "event_type",
                    "subscription_link",
                    "school",
                    "event",
                    "is_test",
                    "created_at",
                    "attempts",
                    "next_attempt_at",
                    "delivered_at",
                    "last_response_status",
                    "last_error_explained",
                ]
            },
        ),
        ("Body as sent", {"fields": ["content_type", "body_text"]}),
    ]
    readonly_fields = [
        "status_display",
        "webhook_id",
        "subscription_link",
        "subscription_link_masked",
        "last_error_explained",
        "last_error_explained_masked",
        "body_text",
    ]

    # --- Permissions: read-only, retrigger through the service ----------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retrigger_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("deliveries.retrigger_delivery") and self._obj_visible(
            request, obj
        )

    # --- The list -------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match and match.url_name and match.url_name.endswith("changelist"):
            queryset = queryset.select_related("subscription", "school").only(*_LIST_FIELDS)
        return queryset

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if self.sees_several_schools(request):
            columns.insert(4, "school")
        return columns

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        """An exact id (indexed), never a text scan of the table."""
        if not search_term.strip():
            return queryset, False
        found = delivery_uuid(search_term)
        if found is None:
            return queryset.none(), False
        return queryset.filter(Q(pk=found) | Q(event_id=found)), False

    @admin.display(description="Created", ordering="created_at")
    def created_display(self, obj: Delivery) -> str:
        return format_html("{}", obj.created_at.strftime("%Y-%m-%d %H:%M:%S"))

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: Delivery) -> str:
        if obj.status == DeliveryStatus.PENDING and obj.last_error_kind:
            return status_badge(obj.status, "Retrying")
        return status_badge(obj.status)

    @admin.display(description="Webhook")
    def subscription_display(self, obj: Delivery) -> str:
        return obj.subscription.name

    @admin.display(description="Test", boolean=True)
    def test_display(self, obj: Delivery) -> bool:
        return obj.is_test

    # --- One delivery ---------------------------------------------------------------------

    @admin.display(description="webhook-id")
    def webhook_id(self, obj: Delivery) -> str:
        return format_html("<code>{}</code>", message_id(obj.pk))

    @admin.display(description="Webhook")
    def subscription_link(self, obj: Delivery) -> str:
        return format_html(
            '<a href="{}">{}</a> <code>{}</code>',
            reverse("admin:subscriptions_subscription_change", args=[obj.subscription_id]),
            obj.subscription.name,
            obj.subscription.url,
        )

    @admin.display(description="Webhook")
    def subscription_link_masked(self, obj: Delivery) -> str:
        return format_html(
            '<a href="{}">{}</a> <code>{}</code>',
            reverse("admin:subscriptions_subscription_change", args=[obj.subscription_id]),
            obj.subscription.name,
            url_query_mask(obj.subscription.url),
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or administers(request, obj.school_id):
            return fieldsets
        # Support staff: the webhook's URL without its query values (tokens live there), the
        # last error without the webhook's secrets and custom header values.
        masked: dict[Any, Any] = {
            "subscription_link": "subscription_link_masked",
            "last_error_explained": "last_error_explained_masked",
        }
        return [
            (title, {**options, "fields": [masked.get(f, f) for f in options["fields"]]})
            for title, options in fieldsets
        ]

    @admin.display(description="Last error")
    def last_error_explained(self, obj: Delivery) -> str:
        return self._last_error(obj, obj.last_error)

    @admin.display(description="Last error")
    def last_error_explained_masked(self, obj: Delivery) -> str:
        hidden = subscription_hidden_values(subscription=obj.subscription)
        return self._last_error(obj, text_scrub(obj.last_error, hidden))

    def _last_error(self, obj: Delivery, message: str) -> str:
        if not obj.last_error_kind:
            return "—"
        return format_html(
            '<strong>{}</strong><br>{}<br><span class="webhook-reason">{}</span>',
            obj.get_last_error_kind_display(),
            failure_explain(
                error_kind=obj.last_error_kind,
                status=obj.last_response_status,
                timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
            ),
            message,
        )

    @admin.display(description="Body")
    def body_text(self, obj: Delivery) -> str:
        return format_html(
            '<pre class="delivery-body">{}</pre>', bytes(obj.body).decode("utf-8", errors="replace")
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        delivery = self.get_object(request, unquote(object_id))
        show_custom = request.user.has_perm(
            "subscriptions.manage_secret_subscription"
        ) and administers(request, delivery.school_id)
        secrets = (
            None if show_custom else subscription_hidden_values(subscription=delivery.subscription)
        )
        attempts = [
            {
                "attempt": attempt,
                **attempt_shown(attempt, secrets=secrets),
                "explanation": failure_explain(
                    error_kind=attempt.error_kind,
                    status=attempt.response_status,
                    timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
                ),
            }
            for attempt in delivery_attempts(delivery_id=delivery.pk)
        ]
        extra = {
            "subtitle": f"{delivery.event_type} to {delivery.subscription.name}",
            "attempts": attempts,
            "can_retrigger": self.has_retrigger_permission(request, delivery),
            "retriggerable": delivery.status != DeliveryStatus.PENDING and not delivery.is_test,
            "status_colours": STATUS_COLOURS,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra)

    # --- Retrigger ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/retrigger/",
                self.admin_site.admin_view(self.retrigger_view),
                name="deliveries_delivery_retrigger",
            ),
            *super().get_urls(),
        ]

    def retrigger_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: send this delivery again, once, now."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        delivery = self.get_object(request, unquote(object_id))
        if not self.has_retrigger_permission(request, delivery):
            raise PermissionDenied
        if delivery_retrigger(delivery=delivery):
            self.message_user(request, "Retriggered: it is being sent again now.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                "Not retriggered: it is still pending (or is a test delivery).",
                messages.WARNING,
            )
        return HttpResponseRedirect(reverse("admin:deliveries_delivery_change", args=[delivery.pk]))

    @admin.action(description="Retrigger the selected deliveries", permissions=["retrigger"])
    def retrigger_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> Any:
        """Ask first; then send the selected final deliveries again and report how many."""
        ids = list(queryset.values_list("pk", flat=True)[: RETRIGGER_LIMIT + 1])
        if len(ids) > RETRIGGER_LIMIT:
            self.message_user(
                request,
                f"More than {RETRIGGER_LIMIT} deliveries selected: narrow the filters, or use "
                "“Recover failed deliveries” on the webhook.",
                messages.ERROR,
            )
            return None
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Retrigger deliveries?",
                "opts": self.opts,
                "deliveries": list(
                    queryset.select_related("subscription").only(*_LIST_FIELDS)[:100]
                ),
                "count": len(ids),
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/deliveries/delivery/retrigger_confirmation.html", context
            )
        count = deliveries_retrigger(delivery_ids=ids)
        message = f"{count} deliveries retriggered."
        if len(ids) - count:
            message += f" {len(ids) - count} skipped: pending already, or test deliveries."
        self.message_user(request, message, messages.SUCCESS if count else messages.WARNING)
        return None


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(SchoolScopedAdmin):
    school_field = "delivery__school"
    list_display = [
        "delivery",
        "number",
        "trigger",
        "started_at",
        "duration_ms",
        "response_status",
        "error_kind",
    ]
    list_filter = ["trigger", "error_kind"]
    list_select_related = ["delivery"]
    search_fields = ["=delivery__id"]  # see get_search_results
    search_help_text = "A delivery id or webhook-id (msg_…)."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    # An attempt is shown on its delivery's page (``change_view`` goes there), where custom
    # header values and secrets are hidden from those who may not see the webhook's settings.
    fields = (
        "delivery",
        "number",
        "trigger",
        "started_at",
        "duration_ms",
        "request_url",
        "response_status",
        "response_headers",
        "response_body",
        "response_body_truncated",
        "error_kind",
        "error_message",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeliveryAttempt]:
        return super().get_queryset(request).defer("delivery__body")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """An attempt's page is its place on the delivery's page: one page that shows attempts,
        with what each viewer may see (another school's attempt is a 404 here first)."""
        attempt = self.get_object(request, unquote(object_id))
        url = reverse("admin:deliveries_delivery_change", args=[attempt.delivery_id])
        return HttpResponseRedirect(f"{url}#attempt-{attempt.number}")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DeliveryAttempt], search_term: str
    ) -> tuple[QuerySet[DeliveryAttempt], bool]:
        if not search_term.strip():
            return queryset, False
        found = delivery_uuid(search_term)
        return (queryset.filter(delivery_id=found) if found else queryset.none()), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
