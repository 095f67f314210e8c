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
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, ngettext_lazy

from audit.services import actor_user
from common.admin_display import datetime_in_zone
from common.admin_lists import (
    DateRangeFilter,
    DropdownFilter,
    EstimatedCountPaginator,
    FilterRefused,
)
from events.models import EventType
from events.search import PAYLOAD_SEARCH_MAX_LENGTH
from schools.admin_scoping import (
    SchoolListFilter,
    SchoolScopedAdmin,
    administers,
    request_school_ids,
)
from subscriptions.models import Subscription
from subscriptions.selectors import subscription_hidden_values
from subscriptions.services import subscription_enable
from webhook_engine.signing import message_id

from .display import (
    STATUS_COLOURS,
    attempt_shown,
    circuit_text,
    state_badge,
    text_scrub,
    url_query_mask,
)
from .explanations import failure_explain
from .export import EXPORT_FORMATS, deliveries_export_response
from .models import (
    AttemptTrigger,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DeliveryStatus,
    delivery_state,
)
from .selectors import (
    deliveries_payload_q,
    deliveries_search_q,
    delivery_attempts,
    endpoint_states,
)
from .services import RetriggerOutcome, deliveries_retrigger, delivery_retrigger

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
    title = gettext_lazy("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            (DeliveryState.PENDING, DeliveryState.PENDING.label),
            (DeliveryState.RETRYING, DeliveryState.RETRYING.label),
            (DeliveryState.DELIVERED, DeliveryState.DELIVERED.label),
            (DeliveryState.FAILED, DeliveryState.FAILED.label),
            ("failing", _("Failed or retrying")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        retrying = Q(status=DeliveryStatus.PENDING) & ~Q(last_error_kind="")
        if value == "failing":
            return queryset.filter(Q(status=DeliveryStatus.FAILED) | retrying)
        if value == DeliveryState.RETRYING:
            return queryset.filter(retrying)
        if value == DeliveryState.PENDING:
            return queryset.filter(status=DeliveryStatus.PENDING, last_error_kind="")
        if value in DeliveryStatus.values:
            return queryset.filter(status=value)
        return queryset


class SubscriptionFilter(DropdownFilter):
    """The webhooks the user may see (the selected one always among the choices)."""

    title = gettext_lazy("webhook")
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

    title = gettext_lazy("event type")
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (key, key) for key in EventType.objects.order_by("key").values_list("key", flat=True)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(event_type=value) if value else queryset


class TestFilter(admin.SimpleListFilter):
    title = gettext_lazy("test deliveries")
    parameter_name = "test"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", _("Real deliveries")), ("yes", _("Test deliveries"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(is_test=self.value() == "yes")
        return queryset


class PayloadFilter(admin.ListFilter):
    """ "Payload contains": deliveries whose event data mentions a word, value or "phrase"
    (``deliveries_payload_q``, on the events' GIN index), among the user's schools."""

    title = gettext_lazy("payload contains")
    parameter_name = "payload"
    template = "admin/filter_text.html"

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        self.value = ""
        if self.parameter_name in params:
            value = params.pop(self.parameter_name)
            value = (value[-1] if isinstance(value, list) else value).strip()
            if len(value) > PAYLOAD_SEARCH_MAX_LENGTH:
                message = _(
                    "Search the payload for at most %(limit)s characters; the filter was not "
                    "applied."
                ) % {"limit": PAYLOAD_SEARCH_MAX_LENGTH}
                messages.error(request, message)
                raise FilterRefused(message)
            if value:
                self.value = value
                self.used_parameters[self.parameter_name] = value
        self.school_ids = request_school_ids(request)

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value:
            return queryset
        return queryset.filter(deliveries_payload_q(term=self.value, school_ids=self.school_ids))

    def choices(self, changelist: Any) -> Any:
        # The form keeps every other filter of the page.
        self.hidden = [
            (name, value)
            for name, value in changelist.params.items()
            if name not in (self.parameter_name, PAGE_VAR)
        ]
        return iter(
            [
                {
                    "selected": not self.value,
                    "query_string": changelist.get_query_string(remove=[self.parameter_name]),
                    "display": _("Any payload"),
                }
            ]
        )


class CreatedFilter(DateRangeFilter):
    title = gettext_lazy("date")
    field_path = "created_at"


_LIST_FIELDS = [
    "id",
    "school",
    "school__name",
    "school__timezone",
    "subscription",
    "subscription__name",
    "event_type",
    "is_test",
    "replay_number",
    "status",
    "attempts",
    "next_trigger",
    "created_at",
    "next_attempt_at",
    "leased_until",
    "last_response_status",
    "last_error_kind",
]


@admin.register(Delivery)
class DeliveryAdmin(SchoolScopedAdmin):
    # Status first; on a phone each row is a card in this order (common/admin_lists.css).
    list_display = [
        "status_display",
        "created_display",
        "event_type_display",
        "subscription_display",
        "last_response_display",
        "next_attempt_display",
    ]
    list_display_links = ["created_display"]
    list_filter = [
        DeliveryStatusFilter,
        SubscriptionFilter,
        EventTypeFilter,
        CreatedFilter,
        PayloadFilter,
        TestFilter,
        "last_error_kind",
        SchoolListFilter,
    ]
    list_select_related = ["subscription", "school"]
    list_per_page = 100
    search_fields = ["=id", "=event__id"]  # see get_search_results
    search_help_text = gettext_lazy(
        "A delivery, webhook-id (msg_…) or event id, whole or its first characters; an event "
        "type (course.created, or course.* for a group); a webhook's name; an HTTP status (500)."
    )
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = ["retrigger_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status_detail",
                    "webhook_id",
                    "event_type",
                    "subscription_link",
                    "school",
                    "event",
                    "is_test",
                    "replay_number",
                    "created_in_zone",
                    "delivered_in_zone",
                    "last_response_status",
                    "last_error_explained",
                ]
            },
        ),
        (gettext_lazy("Body as sent"), {"fields": ["content_type", "body_text"]}),
    ]
    readonly_fields = [
        "replay_number",
        "status_detail",
        "webhook_id",
        "subscription_link",
        "subscription_link_masked",
        "created_in_zone",
        "delivered_in_zone",
        "last_error_explained",
        "last_error_explained_masked",
        "body_text",
    ]

    class Media:
        js = ["common/admin_lists.js"]
        css = {"all": ["common/admin_lists.css"]}

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
            columns = [
                "subscription_school_display" if c == "subscription_display" else c for c in columns
            ]
        return columns

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        """Ids (whole or a prefix), event types, webhook names, HTTP statuses: each an index
        lookup, never a text scan of the table (``deliveries_search_q``)."""
        if not search_term.strip():
            return queryset, False
        webhooks = self.scope(request, Subscription.objects.all())
        return queryset.filter(deliveries_search_q(term=search_term, webhooks=webhooks)), False

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_display(self, obj: Delivery) -> str:
        state = delivery_state(obj.status, obj.last_error_kind)
        maximum = settings.WEBHOOKS_RETRY_MAX_ATTEMPTS
        if obj.status == DeliveryStatus.PENDING and obj.next_trigger == AttemptTrigger.RECOVERY:
            detail = _("sent again, waiting for its turn")
        elif obj.status == DeliveryStatus.PENDING and obj.next_trigger != AttemptTrigger.AUTOMATIC:
            detail = _("sending now")
        elif state == DeliveryState.RETRYING:
            detail = _("attempt %(number)s of %(maximum)s failed") % {
                "number": obj.attempts,
                "maximum": maximum,
            }
        elif obj.attempts > 1:
            detail = ngettext(
                "after %(count)s attempt", "after %(count)s attempts", obj.attempts
            ) % {"count": number_format(obj.attempts, force_grouping=True)}
        else:
            detail = ""
        return format_html(
            '{}<br><small class="delivery-attempts">{}</small>', state_badge(state), detail
        )

    @admin.display(description=gettext_lazy("Created"), ordering="created_at")
    def created_display(self, obj: Delivery) -> str:
        return datetime_in_zone(obj.created_at, obj.school.timezone)

    @admin.display(description=gettext_lazy("Event type"), ordering="event_type")
    def event_type_display(self, obj: Delivery) -> str:
        if obj.is_test:
            return format_html(
                '{} <span class="delivery-test-tag">{}</span>', obj.event_type, _("Test")
            )
        if obj.replay_number:
            return format_html(
                '{} <span class="delivery-test-tag">{}</span>',
                obj.event_type,
                _("Replay %(number)s") % {"number": obj.replay_number},
            )
        return obj.event_type

    @admin.display(description=gettext_lazy("Webhook"))
    def subscription_display(self, obj: Delivery) -> str:
        return obj.subscription.name

    @admin.display(description=gettext_lazy("Webhook"))
    def subscription_school_display(self, obj: Delivery) -> str:
        return format_html(
            '{}<br><small class="delivery-school">{}</small>',
            obj.subscription.name,
            obj.school.name,
        )

    @admin.display(description=gettext_lazy("Last response"))
    def last_response_display(self, obj: Delivery) -> str:
        if obj.last_response_status:
            return str(obj.last_response_status)
        if obj.last_error_kind:
            return obj.get_last_error_kind_display()
        return "—"

    @admin.display(description=gettext_lazy("Next attempt"), ordering="next_attempt_at")
    def next_attempt_display(self, obj: Delivery) -> str:
        if obj.status != DeliveryStatus.PENDING or obj.next_attempt_at is None:
            return "—"
        if obj.next_trigger == AttemptTrigger.RECOVERY:
            return _("in turn")
        if obj.next_trigger != AttemptTrigger.AUTOMATIC:
            return _("now")
        return datetime_in_zone(obj.next_attempt_at, obj.school.timezone)

    # --- One delivery ---------------------------------------------------------------------

    @admin.display(description=gettext_lazy("Status"))
    def status_detail(self, obj: Delivery) -> str:
        """The state in words: attempt n of N, when the next one is, what a "send now" does."""
        state = delivery_state(obj.status, obj.last_error_kind)
        zone = obj.school.timezone
        maximum = settings.WEBHOOKS_RETRY_MAX_ATTEMPTS
        if (
            obj.status == DeliveryStatus.PENDING
            and obj.leased_until
            and obj.leased_until > (timezone.now())
        ):
            text = _("Attempt %(number)s is being sent right now.") % {"number": obj.attempts}
        elif (
            obj.status == DeliveryStatus.PENDING
            and obj.next_trigger in (AttemptTrigger.AUTOMATIC, AttemptTrigger.RECOVERY)
            and (held := self._held_because(obj))
        ):
            text = held  # what goes within the webhook's limits waits for a pause or circuit
        elif obj.status == DeliveryStatus.PENDING and obj.next_trigger == AttemptTrigger.RECOVERY:
            text = _(
                "Sent again: waiting for its turn within the webhook's limits, oldest first "
                "(attempt %(number)s)."
            ) % {"number": obj.attempts + 1}
        elif obj.status == DeliveryStatus.PENDING and obj.next_trigger != AttemptTrigger.AUTOMATIC:
            text = _("Waiting for a worker to send it now (attempt %(number)s).") % {
                "number": obj.attempts + 1
            }
        elif obj.status == DeliveryStatus.PENDING:
            text = format_html(
                _("Attempt {number} of {maximum} at {when}."),
                number=obj.attempts + 1,
                maximum=maximum,
                when=datetime_in_zone(obj.next_attempt_at, zone),
            )
        elif obj.is_test:
            text = _("A Send Test: it is never retried.")
        else:
            text = ngettext("%(count)s attempt made.", "%(count)s attempts made.", obj.attempts) % {
                "count": number_format(obj.attempts, force_grouping=True)
            }
        return format_html("{}<br>{}", state_badge(state), text)

    @staticmethod
    def _held_because(obj: Delivery) -> str:
        """What a due delivery that has not gone waits for, if its webhook holds it back (a
        pause, an open circuit); "" otherwise. Without it the page read "attempt n of N at" a
        time already past."""
        if obj.next_attempt_at is None or obj.next_attempt_at > timezone.now():
            return ""
        subscription = obj.subscription
        number = obj.attempts + 1
        if subscription.paused_at is not None:
            return _(
                "Held while the webhook is paused; it goes when the webhook resumes "
                "(attempt %(number)s)."
            ) % {"number": number}
        circuit = circuit_text(
            endpoint_states(subscription_ids=[subscription.pk]).get(subscription.pk),
            obj.school.timezone,
        )
        if not subscription.is_active or not circuit:
            return ""
        # A disabled webhook's circuit holds nothing back: its deliveries are refused.
        return format_html(
            "{} {}",
            _("Waiting for the receiver (attempt %(number)s).") % {"number": number},
            circuit,
        )

    @admin.display(description=gettext_lazy("Created"))
    def created_in_zone(self, obj: Delivery) -> str:
        return datetime_in_zone(obj.created_at, obj.school.timezone)

    @admin.display(description=gettext_lazy("Delivered"))
    def delivered_in_zone(self, obj: Delivery) -> str:
        return datetime_in_zone(obj.delivered_at, obj.school.timezone)

    @admin.display(description="webhook-id")
    def webhook_id(self, obj: Delivery) -> str:
        return format_html("<code>{}</code>", message_id(obj.pk))

    @admin.display(description=gettext_lazy("Webhook"))
    def subscription_link(self, obj: Delivery) -> str:
        return format_html(
            '<a href="{}">{}</a> <code>{}</code>',
            reverse("admin:subscriptions_subscription_change", args=[obj.subscription_id]),
            obj.subscription.name,
            obj.subscription.url,
        )

    @admin.display(description=gettext_lazy("Webhook"))
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

    @admin.display(description=gettext_lazy("Last error"))
    def last_error_explained(self, obj: Delivery) -> str:
        return self._last_error(obj, obj.last_error)

    @admin.display(description=gettext_lazy("Last error"))
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
                retried=obj.status == DeliveryStatus.PENDING,
            ),
            message,
        )

    @admin.display(description=gettext_lazy("Body"))
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
                    retried=attempt.trigger == AttemptTrigger.AUTOMATIC
                    and delivery.status == DeliveryStatus.PENDING,
                ),
            }
            for attempt in delivery_attempts(delivery_id=delivery.pk)
        ]
        subscription = delivery.subscription
        extra = {
            "subtitle": _("%(event_type)s to %(webhook)s")
            % {"event_type": delivery.event_type, "webhook": subscription.name},
            "attempts": attempts,
            "can_retrigger": self.has_retrigger_permission(request, delivery),
            "webhook_disabled": not subscription.is_active and not delivery.is_test,
            "can_enable": request.user.has_perm("subscriptions.change_subscription")
            and administers(request, delivery.school_id),
            "school_zone": delivery.school.timezone,
            "status_colours": STATUS_COLOURS,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra)

    # --- Retrigger ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "export/<str:export_format>/",
                self.admin_site.admin_view(self.export_view),
                name="deliveries_delivery_export",
            ),
            path(
                "<path:object_id>/retrigger/",
                self.admin_site.admin_view(self.retrigger_view),
                name="deliveries_delivery_retrigger",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest, export_format: str) -> HttpResponseBase:
        """The list as it is filtered and searched now (same query string), as a streamed CSV
        or JSON file: the user's schools only, no secrets (``deliveries/export.py``)."""
        if export_format not in EXPORT_FORMATS:
            raise Http404
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # The filters' own messages say what was wrong; the list shows them.
            url = reverse("admin:deliveries_delivery_changelist")
            return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}")
        queryset = changelist.get_queryset(request).order_by("-created_at", "-pk")
        return deliveries_export_response(queryset, export_format=export_format)

    def retrigger_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: send this delivery now, whatever its state; with ``enable``, re-enable its
        disabled webhook first (school admins)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        delivery = self.get_object(request, unquote(object_id))
        if not self.has_retrigger_permission(request, delivery):
            raise PermissionDenied
        actor = actor_user(request.user)
        subscription = delivery.subscription
        if request.POST.get("enable") and not subscription.is_active:
            if not (
                request.user.has_perm("subscriptions.change_subscription")
                and administers(request, delivery.school_id)
            ):
                raise PermissionDenied
            try:
                subscription_enable(subscription=subscription, actor=actor)
            except Subscription.DoesNotExist:
                raise Http404 from None  # deleted since the page was read, its log with it
            self.message_user(
                request,
                _("The webhook “%(webhook)s” is enabled again.") % {"webhook": subscription.name},
                messages.SUCCESS,
            )
        try:
            outcome = delivery_retrigger(delivery=delivery, actor=actor)
        except Delivery.DoesNotExist:
            raise Http404 from None  # deleted with its webhook since the page was read
        level, text = _RETRIGGER_MESSAGES[outcome]
        self.message_user(request, str(text) % {"webhook": subscription.name}, level)
        return HttpResponseRedirect(reverse("admin:deliveries_delivery_change", args=[delivery.pk]))

    @admin.action(
        description=gettext_lazy("Send the selected deliveries now"), permissions=["retrigger"]
    )
    def retrigger_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> Any:
        """Ask first (saying what will happen to each kind of delivery); then send them now and
        report how many went and why others did not."""
        ids = list(queryset.values_list("pk", flat=True)[: RETRIGGER_LIMIT + 1])
        if len(ids) > RETRIGGER_LIMIT:
            self.message_user(
                request,
                _(
                    "More than %(limit)s deliveries selected: narrow the filters, or use "
                    "“Recover failed deliveries” on the webhook."
                )
                % {"limit": number_format(RETRIGGER_LIMIT, force_grouping=True)},
                messages.ERROR,
            )
            return None
        if not ids:
            # Gone since the list was read (deleted with their webhook, pruned), or never among
            # the user's schools: there is nothing to ask about, nor to send.
            self.message_user(
                request,
                _(
                    "None of the selected deliveries is in the log any more (deleted with their "
                    "webhook, or pruned): nothing was sent."
                ),
                messages.WARNING,
            )
            return None
        if request.POST.get("confirm") != "yes":
            selected = Delivery.objects.filter(pk__in=ids)
            # A test goes to a disabled webhook too (Send Test checks it before re-enabling).
            sendable = Q(subscription__is_active=True) | Q(is_test=True)
            states = {
                state: selected.filter(sendable & _STATE_Q[state]).count()
                for state in DeliveryState
            }
            disabled = selected.exclude(sendable).count()
            context = {
                **self.admin_site.each_context(request),
                "title": _("Send these deliveries now?"),
                "opts": self.opts,
                "deliveries": list(
                    queryset.select_related("subscription", "school").only(*_LIST_FIELDS)[:100]
                ),
                "count": len(ids),
                "states": [(state.label, n) for state, n in states.items() if n],
                "sendable": sum(states.values()),
                "disabled": disabled,
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/deliveries/delivery/retrigger_confirmation.html", context
            )
        result = deliveries_retrigger(delivery_ids=ids, actor=actor_user(request.user))
        at_once = result.queued - result.in_turn
        parts = [
            ngettext(
                "%(count)s delivery is being sent now.",
                "%(count)s deliveries are being sent now.",
                at_once,
            )
            % {"count": number_format(at_once, force_grouping=True)}
        ]
        if result.in_turn:
            parts.append(
                ngettext(
                    "%(count)s more waits for its turn within its webhook's limits.",
                    "%(count)s more wait for their turn within their webhooks' limits.",
                    result.in_turn,
                )
                % {"count": number_format(result.in_turn, force_grouping=True)}
            )
        for outcome, reason in _SKIPPED_REASONS.items():
            number = result.count(outcome)
            if number:
                parts.append(
                    str(
                        reason
                        % {"count": number_format(number, force_grouping=True), "number": number}
                    )
                )
        self.message_user(
            request, " ".join(parts), messages.SUCCESS if result.queued else messages.WARNING
        )
        return None


# Which deliveries each state is, for the confirmation's counts.
_STATE_Q = {
    DeliveryState.PENDING: Q(status=DeliveryStatus.PENDING, last_error_kind=""),
    DeliveryState.RETRYING: Q(status=DeliveryStatus.PENDING) & ~Q(last_error_kind=""),
    DeliveryState.DELIVERED: Q(status=DeliveryStatus.DELIVERED),
    DeliveryState.FAILED: Q(status=DeliveryStatus.FAILED),
}

_RETRIGGER_MESSAGES: dict[RetriggerOutcome, tuple[int, Any]] = {
    RetriggerOutcome.QUEUED: (
        messages.SUCCESS,
        gettext_lazy("Sending it now: the new attempt appears below within moments."),
    ),
    RetriggerOutcome.ALREADY_QUEUED: (
        messages.INFO,
        gettext_lazy("It is already waiting to be sent now; nothing more to do."),
    ),
    RetriggerOutcome.IN_FLIGHT: (
        messages.INFO,
        gettext_lazy("It is being sent right now; its attempt appears below when it ends."),
    ),
    RetriggerOutcome.WEBHOOK_DISABLED: (
        messages.ERROR,
        gettext_lazy(
            "Nothing was sent: the webhook “%(webhook)s” is disabled. Re-enable it, then send "
            "this delivery again."
        ),
    ),
    RetriggerOutcome.TEMPLATE_ERROR: (
        messages.ERROR,
        gettext_lazy(
            "Nothing was sent: the body template of the webhook “%(webhook)s” still cannot "
            "render this event. Correct it (the preview shows the result), then send this "
            "delivery again."
        ),
    ),
}

# Plural chosen by the count ("number"), written grouped as the reader's language does
# ("count").
_SKIPPED_REASONS: dict[RetriggerOutcome, Any] = {
    RetriggerOutcome.WEBHOOK_DISABLED: ngettext_lazy(
        "%(count)s not sent: its webhook is disabled (re-enable it first).",
        "%(count)s not sent: their webhooks are disabled (re-enable them first).",
        "number",
    ),
    RetriggerOutcome.TEMPLATE_ERROR: ngettext_lazy(
        "%(count)s not sent: its webhook's body template still cannot render it (correct it "
        "first).",
        "%(count)s not sent: their webhooks' body templates still cannot render them (correct "
        "them first).",
        "number",
    ),
    RetriggerOutcome.IN_FLIGHT: ngettext_lazy(
        "%(count)s not sent again: it is being sent right now.",
        "%(count)s not sent again: they are being sent right now.",
        "number",
    ),
    RetriggerOutcome.ALREADY_QUEUED: ngettext_lazy(
        "%(count)s was already waiting to be sent now.",
        "%(count)s were already waiting to be sent now.",
        "number",
    ),
}


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
    search_help_text = gettext_lazy("A delivery id or webhook-id (msg_…).")
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
