"""The webhooks list (edudip's overview): status first, last delivery, failures in 24 h and the
success rate over 7 days, read for the whole page at once; filters by state and by topic."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Case, CharField, F, Q, QuerySet, Value, When
from django.db.models.functions import Left, StrIndex
from django.http import (
    HttpRequest,
)
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from common.admin_display import datetime_in_zone, datetime_text
from common.admin_lists import DropdownFilter
from deliveries.display import STATUS_COLOURS, circuit_text, status_badge, url_query_mask
from deliveries.models import DeliveryState
from deliveries.selectors import (
    SubscriptionDeliveryStats,
    endpoint_states,
    subscriptions_delivery_stats,
)
from events.models import EventType
from schools.admin_scoping import (
    SchoolScopedAdmin,
    administers_all_visible,
)

from ..models import Profile, Subscription
from ..selectors import (
    WEBHOOK_DISABLED,
    WEBHOOK_FAILING,
    WEBHOOK_PAUSED,
    subscription_ids_receiving,
)

logger = logging.getLogger(__name__)


def _stats(subscription: Any) -> SubscriptionDeliveryStats:
    """The delivery figures ``WebhookChangeList`` put on a row of the list."""
    stats: SubscriptionDeliveryStats = subscription.delivery_stats
    return stats


class WebhookStateFilter(admin.SimpleListFilter):
    title = gettext_lazy("status")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("healthy", _("Active")),
            ("failing", _("Failing")),
            ("paused", _("Paused")),
            ("disabled", _("Disabled")),
            # Those the admin's home page names: not the ones turned off by hand.
            ("disabled_automatically", _("Disabled automatically")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "healthy":
            return queryset.filter(is_active=True, failing_since__isnull=True)
        if value == "failing":
            return queryset.filter(WEBHOOK_FAILING)
        if value == "paused":
            return queryset.filter(WEBHOOK_PAUSED)
        if value == "disabled":
            return queryset.filter(is_active=False)
        if value == "disabled_automatically":
            return queryset.filter(WEBHOOK_DISABLED)
        return queryset


class TopicFilter(DropdownFilter):
    """Webhooks that receive an event type (directly or through a pattern)."""

    title = gettext_lazy("topic")
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
        unmasked = administers_all_visible(request)
        states = endpoint_states(subscription_ids=[s.pk for s in self.result_list])
        for subscription in self.result_list:
            subscription.delivery_stats = stats.get(subscription.pk, SubscriptionDeliveryStats())
            subscription.circuit = states.get(subscription.pk)
            subscription.url_unmasked = unmasked


class WebhookListColumns(SchoolScopedAdmin):
    """The list's columns, filters and search of the webhooks admin."""

    # --- The list -------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WebhookChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if self.sees_several_schools(request):
            columns.insert(1, "school")
        return columns

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Each word in the name, the URL up to its query string, or (several schools) the
        school's name. Never in the query string: its values are tokens, masked for support
        staff, and a search that matches or not would read them character by character."""
        words = search_term.split()
        if not words:
            return queryset, False
        queryset = queryset.annotate(
            url_before_query=Case(
                When(url__contains="?", then=Left("url", StrIndex("url", Value("?")) - 1)),
                default=F("url"),
                output_field=CharField(),
            )
        )
        several = self.sees_several_schools(request)
        for word in words:
            matches = Q(name__icontains=word) | Q(url_before_query__icontains=word)
            if several:
                matches |= Q(school__name__icontains=word)
            queryset = queryset.filter(matches)
        return queryset, False

    @admin.display(description=gettext_lazy("URL"), ordering="url")
    def url_display(self, obj: Subscription) -> str:
        url = obj.url if len(obj.url) <= 40 else obj.url[:39] + "…"
        return format_html('<span class="webhook-url" title="{}">{}</span>', obj.url, url)

    @admin.display(description=gettext_lazy("URL"), ordering="url")
    def url_masked_display(self, obj: Subscription) -> str:
        """The URL with its query values masked (``?token=…``), for support staff."""
        masked = url_query_mask(obj.url)
        url = masked if len(masked) <= 40 else masked[:39] + "…"
        return format_html('<span class="webhook-url" title="{}">{}</span>', masked, url)

    @admin.display(description=gettext_lazy("Sends to"), ordering="url")
    def destination_display(self, obj: Subscription) -> str:
        """The URL (its query values masked for support staff), then the content type and the
        topics, in one narrow column."""
        # Unmasked only where WebhookChangeList found the viewer manages every school they see.
        masked = not getattr(obj, "url_unmasked", False)
        url = url_query_mask(obj.url) if masked else obj.url
        return format_html(
            '<span class="webhook-url" title="{}">{}</span><br><small>{} · {}</small>',
            url,
            url,
            self.content_type_display(obj),
            self.topics_display(obj),
        )

    @admin.display(description=gettext_lazy("Topics"))
    def topics_display(self, obj: Subscription) -> str:
        """The first two topics and how many more (all of them in the tooltip)."""
        shown = format_html_join(" ", "<code>{}</code>", ((topic,) for topic in obj.topics[:2]))
        more = len(obj.topics) - 2
        if more <= 0:
            return shown
        return format_html(
            '<span title="{}">{} {}</span>',
            ", ".join(obj.topics),
            shown,
            ngettext("+%(count)s more", "+%(count)s more", more)
            % {"count": number_format(more, force_grouping=True)},
        )

    @admin.display(description=gettext_lazy("Type"), ordering="content_type")
    def content_type_display(self, obj: Subscription) -> str:
        if obj.profile == Profile.STANDARD:
            return obj.content_type.upper()
        # Speaking as a vendor is what a reader of the list most needs to know about it.
        return _("%(content_type)s as %(profile)s") % {
            "content_type": obj.content_type.upper(),
            "profile": obj.get_profile_display(),
        }

    @admin.display(description=gettext_lazy("Status"), ordering="is_active")
    def state_display(self, obj: Subscription) -> str:
        if not obj.is_active:
            return format_html(
                '<img src="{}" alt=""> <strong class="webhook-state-disabled">{}</strong>'
                '<br><span class="webhook-reason">{}</span>',
                static("admin/img/icon-no.svg"),
                _("Disabled"),
                obj.disabled_reason or _("Turned off."),
            )
        if obj.paused_at:
            until = (
                _("until %(time)s") % {"time": datetime_text(obj.resume_at, obj.school.timezone)}
                if obj.resume_at
                else _("until resumed")
            )
            return format_html(
                # Two bars (a pause sign) drawn in CSS: not every font has the character.
                '<span aria-hidden="true" style="display: inline-block; width: 3px; height: '
                '11px; border: solid #5b6770; border-width: 0 3px; vertical-align: -1px;">'
                '</span> <strong class="webhook-state-paused">{}</strong><br>'
                '<span class="webhook-reason">{}</span>',
                _("Paused"),
                until,
            )
        # The list reads every row's state at once; a webhook's own page reads its own.
        state = (
            obj.circuit
            if hasattr(obj, "circuit")
            else endpoint_states(subscription_ids=[obj.pk]).get(obj.pk)
        )
        circuit = circuit_text(state, obj.school.timezone)
        if circuit:
            return format_html(
                '<img src="{}" alt=""> <strong class="webhook-state-circuit" style="color: {};">'
                '{}</strong><br><span class="webhook-reason">{}</span>',
                static("admin/img/icon-alert.svg"),
                STATUS_COLOURS[DeliveryState.FAILED],
                _("Receiver unreachable"),
                circuit,
            )
        if obj.failing_since:
            return format_html(
                '<img src="{}" alt=""> <strong class="webhook-state-failing" style="color: {};">'
                '{}</strong><br><span class="webhook-reason">{}</span>',
                static("admin/img/icon-alert.svg"),
                STATUS_COLOURS[DeliveryState.FAILED],
                _("Failing"),
                _("for %(duration)s") % {"duration": timesince(obj.failing_since)},
            )
        if obj.catching_up_since:
            return format_html(
                '<img src="{}" alt=""> <span class="webhook-state-active">{}</span>'
                '<br><span class="webhook-reason">{}</span>',
                static("admin/img/icon-yes.svg"),
                _("Active"),
                _("Catching up: sending what it held while paused, oldest first."),
            )
        return format_html(
            '<img src="{}" alt=""> <span class="webhook-state-active">{}</span>',
            static("admin/img/icon-yes.svg"),
            _("Active"),
        )

    @admin.display(description=gettext_lazy("Last delivery"))
    def last_delivery(self, obj: Subscription) -> str:
        stats = _stats(obj)
        if not stats.last_status:
            return "—"
        code = f" ({stats.last_response_status})" if stats.last_response_status else ""
        when = datetime_in_zone(stats.last_at, obj.school.timezone) if stats.last_at else ""
        return format_html(
            "{}{}<br><small>{}</small>",
            status_badge(stats.last_status, stats.last_error_kind),
            code,
            when,
        )

    @admin.display(description=gettext_lazy("Health"))
    def health(self, obj: Subscription) -> str:
        """Failures in the last 24 hours (linked to them) over the success rate of 7 days."""
        return format_html(
            '<span class="webhook-failures">{}</span><br>{}',
            self.failures_24h(obj),
            self.success_rate_7d(obj),
        )

    def failures_24h(self, obj: Subscription) -> str:
        stats = _stats(obj)
        count = stats.failures_24h
        if not count:
            return _("0 failures / 24 h")
        since = (timezone.localtime() - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        query = urlencode({"subscription": str(obj.pk), "created_at_from": since})
        text = ngettext("%(count)s failure", "%(count)s failures", count) % {
            "count": number_format(count, force_grouping=True)
        }
        recovered = (
            " "
            + ngettext("(%(count)s recovered)", "(%(count)s recovered)", stats.recovered_24h)
            % {"count": number_format(stats.recovered_24h, force_grouping=True)}
            if stats.recovered_24h
            else ""
        )
        return format_html(
            '<a href="{}?{}" style="color: {}; font-weight: bold;">{}</a> / 24 h{}',
            reverse("admin:deliveries_delivery_changelist"),
            query,
            STATUS_COLOURS[DeliveryState.FAILED],
            text,
            recovered,
        )

    def success_rate_7d(self, obj: Subscription) -> str:
        stats = _stats(obj)
        rate = stats.success_rate_7d
        in_progress = (
            ngettext("%(count)s in progress", "%(count)s in progress", stats.in_progress_7d)
            % {"count": number_format(stats.in_progress_7d, force_grouping=True)}
            if stats.in_progress_7d
            else ""
        )
        if rate is None:
            text = in_progress or _("nothing sent in 7 days")
            return format_html('<span class="webhook-reason">{}</span>', text)
        percent = round(rate * 100)
        colour = "#2e7d32" if rate >= 0.95 else "#9a6700" if rate >= 0.8 else "#c62828"
        return format_html(
            '<span class="webhook-rate" title="{}">'
            '<span class="webhook-rate-bar"><span style="width: {}%; background: {};"></span>'
            "</span> {}</span>{}",
            _("%(delivered)s delivered, %(failed)s failed")
            % {"delivered": stats.delivered_7d, "failed": stats.failed_7d},
            percent,
            colour,
            _("%(percent)s%% / 7 d") % {"percent": percent},
            format_html('<br><span class="webhook-reason">{}</span>', in_progress)
            if in_progress
            else "",
        )
