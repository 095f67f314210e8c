"""The audit trail in the admin: read-only, newest first, each school's entries for its admins,
every school's for support staff and superusers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from common.admin_display import datetime_in_zone, datetime_text
from common.admin_lists import DateRangeFilter, EstimatedCountPaginator
from deliveries.models import DeliveryState
from schools.admin_scoping import SchoolListFilter, SchoolScopedAdmin
from subscriptions.models import Profile

from .models import AuditAction, AuditEntry

# Where each kind of object of the trail is shown in the admin.
_OBJECT_PAGES = {
    "webhook": "admin:subscriptions_subscription_change",
    "delivery": "admin:deliveries_delivery_change",
    "api_key": "admin:schools_apikey_change",
}
# What each kind of object is called in the admin's language (the entries store the key).
_OBJECT_TYPES: dict[str, Any] = {
    "webhook": gettext_lazy("webhook"),
    "delivery": gettext_lazy("delivery"),
    "api_key": gettext_lazy("API key"),
}


class WhenFilter(DateRangeFilter):
    title = gettext_lazy("date")
    field_path = "created_at"


@admin.register(AuditEntry)
class AuditEntryAdmin(SchoolScopedAdmin):
    list_display = ["when", "actor_label", "action", "object_link", "changes_display"]
    list_filter = ["action", WhenFilter, SchoolListFilter]
    list_select_related = ["school"]
    search_fields = ["=object_id", "actor_label", "object_repr"]
    search_help_text = gettext_lazy("Who (a user name), an object's name, or its id.")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 100
    fields = (
        "when",
        "school",
        "actor_label",
        "action",
        "object_type_display",
        "object_link",
        "changes_display",
    )
    readonly_fields = fields

    class Media:
        js = ["common/admin_lists.js"]
        css = {"all": ["common/admin_lists.css"]}

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if self.sees_several_schools(request):
            columns.insert(1, "school")
        return columns

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        queryset = super().get_queryset(request)
        school_ids = self.school_ids(request)
        # Entries without a school are the platform's own: superusers and support only.
        return queryset if school_ids is None else queryset.exclude(school__isnull=True)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup in ("object_id", "object_type"):
            return True
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("When"), ordering="created_at")
    def when(self, obj: AuditEntry) -> str:
        return datetime_in_zone(obj.created_at, obj.school.timezone if obj.school else None)

    @admin.display(description=gettext_lazy("object type"))
    def object_type_display(self, obj: AuditEntry) -> str:
        name = _OBJECT_TYPES.get(obj.object_type)
        return capfirst(str(name)) if name is not None else obj.object_type

    @admin.display(description=gettext_lazy("Object"))
    def object_link(self, obj: AuditEntry) -> str:
        page = _OBJECT_PAGES.get(obj.object_type)
        if page and obj.object_id:
            try:
                url = reverse(page, args=[obj.object_id])
            except NoReverseMatch:
                url = ""
            if url:
                return format_html('<a href="{}">{}</a>', url, obj.object_repr)
        return obj.object_repr

    @admin.display(description=gettext_lazy("What changed"))
    def changes_display(self, obj: AuditEntry) -> str:
        if not obj.changes:
            return "—"
        return format_html_join(
            "",
            "<div>{}</div>",
            (
                (
                    _("%(label)s: %(value)s")
                    % {
                        "label": capfirst(str(_field_label(obj.action, name))),
                        "value": _change_text(name, value),
                    },
                )
                for name, value in obj.changes.items()
            ),
        )


# What the entries' keys and values are called in the admin's language.
_FIELD_LABELS: dict[str, Any] = {
    "name": gettext_lazy("Webhook name"),
    "url": gettext_lazy("URL"),
    "topics": gettext_lazy("Topics"),
    "content_type": "Content-Type",
    "basic_auth_enabled": gettext_lazy("Basic authentication"),
    "basic_auth_username": gettext_lazy("Username"),
    "basic_auth_password": gettext_lazy("Password"),
    "custom_headers": gettext_lazy("Custom headers"),
    "body_template": gettext_lazy("Webhook body"),
    "sign_ed25519": gettext_lazy("Asymmetric signature (v1a)"),
    "is_active": gettext_lazy("Active"),
    "reason": gettext_lazy("why it is disabled"),
    "state": gettext_lazy("Status"),
    "since": gettext_lazy("Failed since"),
    "deliveries": gettext_lazy("Deliveries"),
    "previous_secrets_expire_at": gettext_lazy("previous secrets expire at"),
    "payload_filter": gettext_lazy("Payload filter"),
    "profile": gettext_lazy("Delivery profile"),
    "secret_headers": gettext_lazy("Secret headers"),
    "max_concurrency": gettext_lazy("concurrent deliveries"),
    "rate_limit_per_second": gettext_lazy("deliveries per second"),
    "paused": gettext_lazy("Paused"),
    "resume_at": gettext_lazy("Resume automatically at"),
    "held_deliveries": gettext_lazy("held deliveries"),
    "event_types": gettext_lazy("Event types"),
}
# A key some actions record with another meaning: a replay's range is on publication times.
_ACTION_FIELD_LABELS: dict[str, dict[str, Any]] = {
    AuditAction.DELIVERIES_REPLAYED: {
        "since": gettext_lazy("Published since"),
        "until": gettext_lazy("Published before"),
    },
}
_VALUES: dict[Any, Any] = {
    "changed": gettext_lazy("changed"),
    "sending now": gettext_lazy("sending now"),
    **{state.value: state.label for state in DeliveryState},
}


# Keys whose value is a list of its own, not a [before, after] pair.
_LIST_FIELDS = frozenset({"event_types"})
# Values a field stores as a key, shown as the form shows them.
_FIELD_VALUES: dict[str, dict[str, Any]] = {
    "profile": {profile.value: profile.label for profile in Profile},
}


def _field_label(action: str, name: str) -> Any:
    """What the admin calls the key ``name`` of an entry of ``action``; the key itself if it
    has no name."""
    return _ACTION_FIELD_LABELS.get(action, {}).get(name) or _FIELD_LABELS.get(name, name)


def _change_text(name: str, value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and name not in _LIST_FIELDS:
        before, after = value
        if before is None:
            return _short(name, after)
        return f"{_short(name, before)} → {_short(name, after)}"
    return _short(name, value)


def _short(name: str, value: Any) -> str:
    if value is True or value is False:
        return str(_("Yes") if value else _("No"))
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        text = ", ".join(map(str, value)) or "—"
    elif isinstance(value, str) and value in _FIELD_VALUES.get(name, {}):
        text = str(_FIELD_VALUES[name][value])
    elif isinstance(value, str) and value in _VALUES:
        text = str(_VALUES[value])
    else:
        text = _moment(value) or str(value)
    return text if len(text) <= 120 else text[:119] + "…"


def _moment(value: Any) -> str:
    """An ISO date and time of the entry, as every page of the admin shows one."""
    if not isinstance(value, str) or len(value) < 19 or value[10:11] != "T":
        return ""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return ""
    return datetime_text(moment) if moment.tzinfo else ""
