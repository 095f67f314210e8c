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
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from audit.selectors import audit_entries_for
from audit.services import actor_user
from deliveries.admin_charts import timeline_chart
from deliveries.display import attempt_shown
from deliveries.explanations import failure_explain
from deliveries.models import Delivery, delivery_state
from deliveries.selectors import deliveries_recent, deliveries_timeline
from deliveries.services import (
    delivery_test_send_settings,
    subscription_pause,
    subscription_resume,
)
from schools.admin_scoping import (
    SchoolListFilter,
    schools_visible,
)
from webhook_engine.filters import filter_describe, filter_errors

from ..crypto import SecretUnreadable, secret_decrypt, secret_encrypt
from ..forms import SendTestForm, SubscriptionForm, TopicsWidget
from ..models import EDITABLE_FIELDS, NEWEST_SECRET_ONLY_PROFILES, STATE_FIELDS, Subscription
from ..selectors import (
    subscription_event_types,
    subscription_filter_samples,
)
from ..services import (
    signing_secret_generate,
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
    # Status first, then what a school admin scans for; on a phone each row is a card.
    list_display = [
        "state_display",
        "name",
        "last_delivery",
        "health",
        "destination_display",
    ]
    list_display_links = ["name"]
    list_filter = [WebhookStateFilter, TopicFilter, "content_type", "profile", SchoolListFilter]
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
        *STATE_FIELDS,
        "created_at",
        "updated_at",
        "topics_display",
        "basic_auth_display",
        "custom_headers_display",
        "payload_filter_display",
        "deliveries_link",
    ]
    actions = [
        "send_test",
        "enable_selected",
        "pause_selected",
        "resume_selected",
        "rotate_secrets",
    ]

    class Media:
        js = ["subscriptions/webhook_form.js", "common/admin_lists.js"]
        css = {"all": ["subscriptions/webhook_form.css", "common/admin_lists.css"]}

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
                (_("Payload filter"), {"fields": ["payload_filter_display"]}),
                (_("Delivery"), {"fields": ["content_type", "profile", "basic_auth_display"]}),
                (_("Custom headers"), {"fields": ["custom_headers_display"]}),
                (_("Webhook body"), {"fields": ["body_template"]}),
                (_("Signature"), {"fields": [secret, "sign_ed25519"]}),
                (_("Delivery limits"), {"fields": ["max_concurrency", "rate_limit_per_second"]}),
                (_("Status"), {"fields": ["state_display", "deliveries_link"]}),
            ]
        main = ["name", "url", "topics", "content_type"]
        if obj is None:
            main.insert(0, "school")
        elif several:
            main.insert(0, "school_display")
        fieldsets: list[tuple[Any, Any]] = [
            (None, {"fields": main}),
            (
                _("Payload filter"),
                {
                    "fields": ["payload_filter"]
                    if obj is None
                    else ["payload_filter", "payload_filter_display"]
                },
            ),
            (_("Profile"), {"fields": ["profile"]}),
            (
                _("Basic authentication"),
                {"fields": ["basic_auth_enabled", "basic_auth_username", "basic_auth_password"]},
            ),
            (_("Custom headers"), {"fields": ["custom_headers", "secret_headers"]}),
            (_("Webhook body"), {"fields": ["body_template"]}),
            (
                _("Signature"),
                {"fields": ["sign_ed25519"] if obj is None else [secret, "sign_ed25519"]},
            ),
        ]
        status = ["is_active"]
        fieldsets.append(
            (
                _("Delivery limits"),
                {
                    "fields": ["max_concurrency", "rate_limit_per_second"],
                    "description": _(
                        "However slow or dead this receiver is, it never holds more than these "
                        "of the workers: the deliveries beyond wait their turn."
                    ),
                },
            )
        )
        if obj is not None:
            status += ["state_display", "deliveries_link", "settings_version"]
        fieldsets.append((_("Status"), {"fields": status}))
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

    @admin.display(description=gettext_lazy("School"))
    def school_display(self, obj: Subscription) -> str:
        return obj.school.name

    @admin.display(description=gettext_lazy("Basic authentication"))
    def basic_auth_display(self, obj: Subscription) -> str:
        if not obj.basic_auth_enabled:
            return _("No")
        return format_html(_("Yes, as <code>{}</code> (password hidden)"), obj.basic_auth_username)

    @admin.display(description=gettext_lazy("Custom headers"))
    def custom_headers_display(self, obj: Subscription) -> str:
        if not obj.custom_headers:
            return "—"
        return format_html_join(
            "\n", "<div><code>{}: {}</code></div>", ((name, MASK) for name in obj.custom_headers)
        )

    @admin.display(description=gettext_lazy("In plain words"))
    def payload_filter_display(self, obj: Subscription) -> str:
        if filter_errors(obj.payload_filter):
            return _("This filter is not valid: it lets no event through. Correct it.")
        lines = filter_describe(obj.payload_filter)
        samples = subscription_filter_samples(subscription=obj)
        passing = [key for key, passes in samples if passes]
        failing = [key for key, passes in samples if not passes]
        return format_html(
            '<div class="webhook-filter-words">{}</div>'
            '<div class="webhook-filter-samples">{}</div>',
            format_html_join(
                "",
                '<div class="webhook-filter-depth-{}">{}</div>',
                ((depth, text) for depth, text in lines),
            ),
            format_html(
                "{}<br>{}",
                _("Samples that pass: %(types)s.") % {"types": ", ".join(passing) or "—"},
                _("Samples that do not: %(types)s.") % {"types": ", ".join(failing) or "—"},
            ),
        )

    @admin.display(description=gettext_lazy("Signing secret"))
    def signing_secret_hidden(self, obj: Subscription) -> str:
        return _("Hidden: only the school's admins can see and rotate the signing secret.")

    @admin.display(description=gettext_lazy("Signing secret"))
    def signing_secret(self, obj: Subscription) -> str:
        secret_url = reverse("admin:subscriptions_subscription_secret", args=[obj.pk])
        rotate_url = reverse("admin:subscriptions_subscription_rotate_secret", args=[obj.pk])
        return format_html(
            '<span class="webhook-secret" data-url="{}" data-reveal="{}" data-hide="{}" '
            'data-copy="{}" data-copied="{}"><code class="webhook-secret-value">'
            "whsec_{}</code> "
            '<a class="button webhook-secret-reveal" href="{}">{}</a> '
            '<a class="button webhook-secret-copy" href="#" hidden>{}</a> '
            '<a class="button webhook-secret-rotate" href="{}">{}</a></span>'
            '<div class="help">{}</div>',
            secret_url,
            _("Reveal"),
            pgettext("hide a secret", "Hide"),
            _("Copy"),
            _("Copied"),
            MASK * 3,
            secret_url,
            _("Reveal"),
            _("Copy"),
            rotate_url,
            _("Rotate…"),
            _(
                "Receivers verify the webhook-signature header (Standard Webhooks v1, "
                "HMAC-SHA256) with it; with the Edusign profile it is also the client secret of "
                "x-edusign-hmac."
            ),
        )

    @admin.display(description=gettext_lazy("Deliveries"))
    def deliveries_link(self, obj: Subscription) -> str:
        url = reverse("admin:deliveries_delivery_changelist")
        return format_html(
            '<a href="{}?subscription={}">{}</a>', url, obj.pk, _("Delivery log of this webhook")
        )

    # --- Send Test with the settings on the page (saved or not) ---------------------------

    def _send_test_context(self, request: HttpRequest, obj: Subscription | None) -> dict[str, Any]:
        """The Send Test part of the settings page: the topics to choose from and who may."""
        if obj is None:
            allowed = self.has_add_permission(request) and request.user.has_perm(
                "subscriptions.send_test_subscription"
            )
        else:
            allowed = self.has_send_test_permission(request, obj) and self.has_change_permission(
                request, obj
            )
        # Every type is on offer (the test sends the topics as they are on the page, saved or
        # not); the first one those topics receive is chosen.
        event_types = subscription_event_types(subscription=Subscription(topics=["*"]))
        if request.method == "POST":
            topics = TopicsWidget().value_from_datadict(request.POST, None, "topics")
        else:
            topics = list(obj.topics) if obj is not None else []
        received = subscription_event_types(subscription=Subscription(topics=topics))
        form = SendTestForm(
            request.POST if request.method == "POST" and "_send_test" in request.POST else None,
            event_types=event_types,
            initial={"event_type": received[0]} if received else None,
            prefix="send_test",
        )
        return {"send_test_form": form, "can_send_test_settings": allowed}

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        if request.method == "POST" and "_send_test" in request.POST:
            return self._send_test_settings_view(request, object_id, form_url, extra_context)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ValidationError, Subscription.DoesNotExist):
            if request.method != "POST":
                raise
        # Another request changed what this form's checks saw (took the name, deleted the
        # webhook) before the save, which refused and wrote nothing: the page again, whose
        # checks now see the change and say so.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except Subscription.DoesNotExist as exc:
            raise Http404("This webhook no longer exists.") from exc
        except ValidationError as exc:
            # Changed again between those checks and that save: what was typed is lost.
            for message in exc.messages:
                self.message_user(request, message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def _new_secret(self, request: HttpRequest) -> str:
        """The signing secret of the webhook being added: made for its first Send Test, kept
        (encrypted) in the session, and used when it is saved."""
        stored = _pending_secret(request)
        if stored:
            return stored
        secret = signing_secret_generate()
        request.session[_NEW_SECRET_KEY] = secret_encrypt(secret)
        return secret

    def _send_test_settings_view(
        self,
        request: HttpRequest,
        object_id: str | None,
        form_url: str,
        extra_context: dict[str, Any] | None,
    ) -> HttpResponse:
        """Send Test with the settings as typed on the page (nothing is saved), then show the
        page again with the answer, the settings as they were and any errors in them."""
        add = object_id is None
        obj = None if add else self.get_object(request, unquote(object_id or ""))
        context = self._send_test_context(request, obj)
        if not context["can_send_test_settings"]:
            raise PermissionDenied
        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(
            request, obj, change=not add, fields=flatten_fieldsets(fieldsets)
        )
        form = form_class(request.POST, request.FILES, instance=obj)
        test_form = context["send_test_form"]
        if form.is_valid() and test_form.is_valid():
            try:
                attempt = delivery_test_send_settings(
                    subscription=form.instance,
                    event_type=test_form.cleaned_data["event_type"],
                    basic_auth_password=form.cleaned_data.get("basic_auth_password") or None,
                    signing_secret=self._new_secret(request) if add else None,
                )
            except ValidationError as exc:
                context["send_test_errors"] = exc.messages
            else:
                context.update(self._send_test_result(request, attempt, form.instance))
        else:
            context["send_test_errors"] = [
                _("Nothing was sent: correct the settings below, then send the test again.")
            ]
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),
            self.get_prepopulated_fields(request, obj),
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        title = _("Add %s") if add else _("Change %s")
        context.update(
            {
                **self.admin_site.each_context(request),
                "title": title % self.opts.verbose_name,
                "subtitle": str(obj) if obj else None,
                "adminform": admin_form,
                "object_id": object_id,
                "original": obj,
                "is_popup": False,
                "to_field": None,
                "media": self.media + admin_form.media,
                "inline_admin_formsets": [],
                "errors": helpers.AdminErrorList(form, []),
                "preserved_filters": self.get_preserved_filters(request),
                **(self._page_extras(request, obj) if obj else {}),
                **(extra_context or {}),
            }
        )
        return self.render_change_form(
            request, context, add=add, change=not add, obj=obj, form_url=form_url
        )

    def _send_test_result(
        self, request: HttpRequest, attempt: Any, subscription: Subscription
    ) -> dict[str, Any]:
        shown = attempt_shown(attempt, secrets=None)
        return {
            "send_test_attempt": attempt,
            "send_test_shown": shown,
            # The body exactly as the receiver got it (a vendor profile's own shape included).
            "send_test_request_body": bytes(attempt.delivery.body).decode(
                "utf-8", errors="replace"
            ),
            "send_test_state": delivery_state(
                "delivered" if attempt.succeeded else "failed", attempt.error_kind
            ),
            "send_test_explanation": failure_explain(
                error_kind=attempt.error_kind,
                status=attempt.response_status,
                timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
                retried=False,
            ),
            "send_test_delivery_url": reverse(
                "admin:deliveries_delivery_change", args=[attempt.delivery_id]
            )
            if attempt.pk
            else None,
        }

    def _page_extras(self, request: HttpRequest, obj: Subscription) -> dict[str, Any]:
        """What a webhook's page shows below its settings: how its deliveries went (the chart,
        GitHub's Recent Deliveries) and its audit trail."""
        zone = timezone.get_current_timezone()
        return {
            "chart": timeline_chart(
                deliveries_timeline(school_ids=None, subscription_id=obj.pk, zone=zone)
            ),
            "recent_deliveries": [
                (delivery, delivery_state(delivery.status, delivery.last_error_kind))
                for delivery in deliveries_recent(subscription_id=obj.pk)
            ],
            "school_zone": obj.school.timezone,
            "audit_entries": list(audit_entries_for(object_type="webhook", object_id=obj.pk)[:10])
            if request.user.has_perm("audit.view_auditentry")
            else None,
        }

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "GET":
            request.session.pop(_NEW_SECRET_KEY, None)  # a new webhook, a new secret
        extra = {**self._send_test_context(request, None), **(extra_context or {})}
        return super().add_view(request, form_url, extra_context=extra)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        subscription = self.get_object(request, unquote(object_id))
        extra = {
            **self._send_test_context(request, subscription),
            "can_send_test": self.has_send_test_permission(request, subscription),
            "can_recover": self.has_recover_permission(request, subscription),
            "can_pause": subscription is not None
            and subscription.is_active
            and self.has_change_permission(request, subscription),
            **self._page_extras(request, subscription),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        pending = None if change else _pending_secret(request)
        subscription_save(
            subscription=obj,
            basic_auth_password=form.cleaned_data.get("basic_auth_password"),
            actor=actor_user(request.user),
            signing_secret=pending,
            checked=True,  # by the form, this request (its URL resolved once, not twice)
            # The page's settings are still the stored ones, checked again under the lock.
            version=(form.cleaned_data.get("settings_version") or None) if change else None,
        )
        if not change:
            # Only once saved: a save refused at the last moment keeps the secret that Send Test
            # already used for the page shown again.
            request.session.pop(_NEW_SECRET_KEY, None)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """What deleting webhooks removes, as counts: a webhook takes its delivery log with it
        (``subscription_delete``), which is never listed row by row nor deleted on its own."""
        subscriptions = list(objs)
        ids = [subscription.pk for subscription in subscriptions]
        counts = {
            _("webhooks"): len(subscriptions),
            _("deliveries, with their attempts"): Delivery.objects.filter(
                subscription_id__in=ids
            ).count(),
        }
        return [str(subscription) for subscription in subscriptions], counts, set(), []

    def delete_model(self, request: HttpRequest, obj: Subscription) -> None:
        subscription_delete(subscription=obj, actor=actor_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        for subscription in queryset:
            subscription_delete(subscription=subscription, actor=actor_user(request.user))

    def response_add(
        self, request: HttpRequest, obj: Subscription, post_url_continue: str | None = None
    ) -> HttpResponse:
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # BrainCert's flow: save, then Send Test. Stay on the webhook's page.
        self.message_user(
            request,
            _(
                "The webhook “%(name)s” was added. Its signing secret is below; use Send Test "
                "to try it."
            )
            % {"name": obj.name},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:subscriptions_subscription_change", args=[obj.pk])
        )

    # --- Actions --------------------------------------------------------------------------

    @admin.action(
        description=gettext_lazy("Send Test to the selected webhook"), permissions=["send_test"]
    )
    def send_test(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> Any:
        subscriptions = list(queryset[:2])
        if len(subscriptions) != 1:
            self.message_user(request, _("Select one webhook to send a test to."), messages.WARNING)
            return None
        return HttpResponseRedirect(
            reverse("admin:subscriptions_subscription_send_test", args=[subscriptions[0].pk])
        )

    @admin.action(
        description=gettext_lazy("Re-enable the selected webhooks"), permissions=["change"]
    )
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = 0
        for subscription in queryset:
            try:
                count += subscription_enable(
                    subscription=subscription, actor=actor_user(request.user)
                )
            except Subscription.DoesNotExist:
                continue  # deleted by another request since the list was read
        self.message_user(
            request,
            ngettext("%(count)s webhook re-enabled.", "%(count)s webhooks re-enabled.", count)
            % {"count": number_format(count, force_grouping=True)},
        )

    @admin.action(description=gettext_lazy("Pause the selected webhooks"), permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = 0
        for subscription in queryset.filter(paused_at__isnull=True):
            count += subscription_pause(subscription=subscription, actor=actor_user(request.user))
        self.message_user(
            request,
            ngettext(
                "%(count)s webhook paused: its events are kept until it is resumed.",
                "%(count)s webhooks paused: their events are kept until they are resumed.",
                count,
            )
            % {"count": number_format(count, force_grouping=True)},
        )

    @admin.action(description=gettext_lazy("Resume the selected webhooks"), permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        resumed = held = 0
        for subscription in queryset.filter(paused_at__isnull=False):
            result = subscription_resume(subscription=subscription, actor=actor_user(request.user))
            resumed += result.resumed
            held += result.held
        self.message_user(
            request,
            ngettext(
                "%(count)s webhook resumed; %(held)s held deliveries are being sent, oldest first.",
                "%(count)s webhooks resumed; %(held)s held deliveries are being sent, oldest "
                "first.",
                resumed,
            )
            % {
                "count": number_format(resumed, force_grouping=True),
                "held": number_format(held, force_grouping=True),
            },
        )

    @admin.action(
        description=gettext_lazy("Rotate the signing secrets of the selected webhooks"),
        permissions=["manage_secret"],
    )
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        subscriptions = list(queryset.select_related("school"))
        # What the rotate page asks of each webhook: being an admin of its school, not only
        # seeing it. Nothing is rotated unless every selected one passes.
        if not all(self.has_manage_secret_permission(request, obj) for obj in subscriptions):
            raise PermissionDenied
        count = 0
        newest_only: list[Subscription] = []
        for subscription in subscriptions:
            try:
                subscription_secret_rotate(
                    subscription=subscription, actor=actor_user(request.user)
                )
            except Subscription.DoesNotExist:
                continue  # deleted by another request since the list was read
            count += 1
            if subscription.profile in NEWEST_SECRET_ONLY_PROFILES:
                newest_only.append(subscription)
        self.message_user(
            request,
            ngettext(
                "%(count)s signing secret rotated; the previous one keeps signing for %(grace)s, "
                "so the receiver can switch.",
                "%(count)s signing secrets rotated; the previous ones keep signing for "
                "%(grace)s, so receivers can switch.",
                count,
            )
            % {"count": number_format(count, force_grouping=True), "grace": _grace_text()},
        )
        if newest_only:
            self.message_user(
                request,
                ngettext(
                    "%(count)s of them speaks %(profiles)s, whose own signature carries the new "
                    "secret only: its receiver refuses the deliveries until it has the new "
                    "secret. Give it the new secret now.",
                    "%(count)s of them speak %(profiles)s, whose own signature carries the new "
                    "secret only: their receivers refuse the deliveries until they have the new "
                    "secret. Give it to them now.",
                    len(newest_only),
                )
                % {
                    "count": number_format(len(newest_only), force_grouping=True),
                    "profiles": ", ".join(
                        sorted({str(s.get_profile_display()) for s in newest_only})
                    ),
                },
                messages.WARNING,
            )


_NEW_SECRET_KEY = "webhooks_new_webhook_secret"  # noqa: S105 - a session key name


def _pending_secret(request: HttpRequest) -> str | None:
    """The secret Send Test made for the webhook being added, if the session keeps one that the
    configured keys can read (one kept under a key rotated out since is made anew)."""
    stored = request.session.get(_NEW_SECRET_KEY)
    if not stored:
        return None
    try:
        return secret_decrypt(stored)
    except SecretUnreadable:
        return None
