"""The webhooks admin: the overview (edudip), the settings page (BrainCert) with Send Test, the
signing secret (reveal, copy, rotate) and recovering failed deliveries.

``changelist`` holds the list, ``pages`` the pages of one webhook; this module registers the
admin and holds the settings page and the actions. Reads come from selectors, writes go through
the services; every page is scoped to the user's schools by ``SchoolScopedAdmin``.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from deliveries.models import Delivery
from schools.admin_scoping import (
    SchoolListFilter,
    schools_visible,
)

from ..forms import SendTestForm, SubscriptionForm
from ..models import EDITABLE_FIELDS, Subscription
from ..selectors import (
    subscription_event_types,
)
from ..services import (
    subscription_delete,
    subscription_enable,
    subscription_save,
    subscription_secret_rotate,
)
from .changelist import (
    TopicFilter,
    WebhookListColumns,
    WebhookStateFilter,
)
from .pages import MASK, WebhookPages, _grace_text

logger = logging.getLogger(__name__)


@admin.register(Subscription)
class SubscriptionAdmin(WebhookListColumns, WebhookPages):
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
    search_fields = ["name", "url"]  # see get_search_results: never the URL's query string
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
            ("Custom headers", {"fields": ["custom_headers", "secret_headers"]}),
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
        # A setting the layout above does not place yet still shows, after the main ones.
        placed = {name for _title, options in fieldsets for name in options["fields"]}
        main += [name for name in EDITABLE_FIELDS if name not in placed]
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
