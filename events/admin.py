from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.formats import number_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from common.admin_display import datetime_in_zone
from common.admin_lists import DateRangeFilter, DropdownFilter, EstimatedCountPaginator
from common.forms import NestingSafeJSONField
from schools.admin_scoping import SchoolListFilter, SchoolScopedAdmin
from webhook_engine.inputs import json_problems
from webhook_engine.vendors import SEED_EVENT_NAMES

from .models import Event, EventType, ScheduledEvent
from .reference import reference_groups
from .schemas import data_errors, schema_errors
from .selectors import event_types_catalog
from .services import ScheduledEventNotPending, scheduled_event_cancel

if TYPE_CHECKING:  # a development dependency: for the type checker only
    from django_stubs_ext import StrOrPromise

_CODE = re.compile(r"`([^`]+)`")

CATALOG_FIELDS = ["key", "group", "description", "sample_payload", "json_schema", "version"]


def description_html(text: str) -> SafeString:
    """A catalog description with its `code` spans as <code>."""
    return mark_safe(_CODE.sub(r"<code>\1</code>", escape(text)))  # noqa: S308 - escaped above


def in_school_zone(field: str, description: StrOrPromise) -> Callable[[Any, Any], str]:
    """An admin column or read-only field showing the datetime ``field`` of a row in its
    school's zone, with seconds and the zone named, as every admin page shows times (the
    stock rendering would show it in the reader's zone, UTC for support staff, unnamed)."""

    @admin.display(description=description, ordering=field)
    def display(model_admin: Any, obj: Any) -> str:
        return datetime_in_zone(getattr(obj, field), obj.school.timezone)

    display.__name__ = f"{field}_in_zone"
    return display


class CatalogJSONField(NestingSafeJSONField):
    """JSON the catalog can store: an empty box is ``{}`` (the columns hold no null); nesting
    Python's parser gives up on, text and numbers ``jsonb`` refuses are form errors, not a
    database error."""

    def to_python(self, value: Any) -> Any:
        parsed = super().to_python(value)
        if parsed is None:
            return {}
        problems = json_problems(parsed, path="data")
        if problems:
            raise ValidationError([message for _path, message in problems], code="invalid")
        return parsed


class EventTypeForm(forms.ModelForm):
    sample_payload = CatalogJSONField(label=gettext_lazy("sample payload"), required=False)
    json_schema = CatalogJSONField(
        label=gettext_lazy("JSON Schema"),
        required=False,
        help_text=gettext_lazy("JSON Schema that event data must validate against."),
    )

    class Meta:
        model = EventType
        fields = [*CATALOG_FIELDS, "deprecated"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        schema = self.cleaned_data.get("json_schema")
        if schema is None:
            return self.cleaned_data
        errors = schema_errors(schema)
        if errors:
            self.add_error("json_schema", errors)
            return self.cleaned_data
        sample = self.cleaned_data.get("sample_payload")
        if sample is not None:
            problems = data_errors(schema, sample, root="sample")
            if problems:
                self.add_error(
                    "sample_payload",
                    ValidationError([_("The sample does not match the schema:"), *problems]),
                )
        return self.cleaned_data


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    """The catalog. Shipped types are read-only (an upgrade rewrites them); platform operators
    (superusers) add their own types and edit those."""

    form = EventTypeForm
    list_display = ["key", "group", "description", "version", "deprecated", "shipped"]
    list_filter = ["group", "deprecated", "shipped"]
    search_fields = ["key", "description"]

    def get_readonly_fields(self, request: HttpRequest, obj: EventType | None = None) -> list[str]:
        if obj is not None and obj.shipped:
            return [*CATALOG_FIELDS, "deprecated", "shipped"]
        if obj is not None:
            return ["key"]  # events and subscriptions refer to it
        return []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: EventType | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: EventType | None = None) -> bool:
        return request.user.is_superuser and not (obj is not None and obj.shipped)

    def get_urls(self) -> list[URLPattern]:
        reference = path(
            "reference/",
            self.admin_site.admin_view(self.reference_view),
            name="events_eventtype_reference",
        )
        return [reference, *super().get_urls()]

    def reference_view(self, request: HttpRequest) -> HttpResponse:
        """The receiver-facing reference of every event type, as docs/events.md has it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        entries = [
            {
                "key": event_type.key,
                "group": event_type.group,
                "description": event_type.description,
                "version": event_type.version,
                "deprecated": event_type.deprecated,
                "sample_payload": event_type.sample_payload,
                "json_schema": event_type.json_schema,
            }
            for event_type in event_types_catalog()
        ]
        groups = reference_groups(entries)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Event reference"),
            "opts": self.opts,
            "groups": [
                {
                    "name": group.name,
                    "types": [
                        {
                            "item": item,
                            "description": description_html(item.description),
                            "vendors": [
                                {
                                    "shape": shape,
                                    "rows": [
                                        (path, description_html(source))
                                        for path, source in shape.rows
                                    ],
                                }
                                for shape in item.vendors
                            ],
                        }
                        for item in group.types
                    ],
                }
                for group in groups
            ],
            "type_count": len(entries),
            "seed_names": SEED_EVENT_NAMES,
        }
        return TemplateResponse(request, "admin/events/eventtype/reference.html", context)


class EventTypeFilter(DropdownFilter):
    """The catalog's event types (not the distinct values of a large table)."""

    title = gettext_lazy("event type")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (key, key) for key in EventType.objects.order_by("key").values_list("key", flat=True)
        ]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(type_id=value) if value else queryset


class CreatedFilter(DateRangeFilter):
    title = gettext_lazy("date")
    field_path = "created_at"


@admin.register(Event)
class EventAdmin(SchoolScopedAdmin):
    """The event log of the user's schools (Send Test samples are kept out of it)."""

    list_display = [
        "id",
        "type_key",
        "school",
        "occurred_at_in_zone",
        "created_at_in_zone",
        "fanned_out_at_in_zone",
    ]
    list_filter = [EventTypeFilter, CreatedFilter, SchoolListFilter]
    list_select_related = ["school"]
    search_fields = ["=id", "=idempotency_key"]  # see get_search_results
    search_help_text = gettext_lazy("An event id or an idempotency key.")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    readonly_fields = [
        "id",
        "school",
        "type",
        "data",
        "occurred_at_in_zone",
        "created_at_in_zone",
        "idempotency_key",
        "fanned_out_at_in_zone",
    ]
    occurred_at_in_zone = in_school_zone("occurred_at", gettext_lazy("occurred at"))
    created_at_in_zone = in_school_zone("created_at", gettext_lazy("created"))
    fanned_out_at_in_zone = in_school_zone("fanned_out_at", gettext_lazy("fanned out at"))

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request).filter(is_test=False)
        match = request.resolver_match
        if match and match.url_name and match.url_name.endswith("changelist"):
            queryset = queryset.defer("data")  # up to 256 KB each
        return queryset

    @admin.display(description=gettext_lazy("type"), ordering="type")
    def type_key(self, obj: Event) -> str:
        return obj.type_id

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        """An exact id or key (indexed), never a text scan of the table."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(idempotency_key=term), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ScheduledEvent)
class ScheduledEventAdmin(SchoolScopedAdmin):
    """Events waiting for their time (read-only: the platform schedules them); support staff can
    cancel one."""

    list_display = ["due_at_in_zone", "type", "school", "status", "key", "published_at_in_zone"]
    list_filter = ["status", "type", SchoolListFilter]
    list_select_related = ["school", "type"]
    search_fields = ["=id", "=key", "school__slug"]
    date_hierarchy = "due_at"
    show_full_result_count = False
    actions = ["cancel"]
    readonly_fields = [
        "id",
        "school",
        "type",
        "data",
        "due_at_in_zone",
        "key",
        "status",
        "created_at_in_zone",
        "updated_at_in_zone",
        "published_at_in_zone",
        "cancelled_at_in_zone",
        "event",
        "error",
    ]
    due_at_in_zone = in_school_zone("due_at", gettext_lazy("due at"))
    created_at_in_zone = in_school_zone("created_at", gettext_lazy("created"))
    updated_at_in_zone = in_school_zone("updated_at", gettext_lazy("updated"))
    published_at_in_zone = in_school_zone("published_at", gettext_lazy("published at"))
    cancelled_at_in_zone = in_school_zone("cancelled_at", gettext_lazy("cancelled at"))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("events.change_scheduledevent")

    @admin.action(
        description=gettext_lazy("Cancel the selected scheduled events"), permissions=["cancel"]
    )
    def cancel(self, request: HttpRequest, queryset: Any) -> None:
        cancelled = not_pending = 0
        for scheduled_event in queryset:
            try:
                scheduled_event_cancel(scheduled_event=scheduled_event)
            except ScheduledEventNotPending:
                not_pending += 1
            else:
                cancelled += 1
        message = ngettext("%(count)s cancelled.", "%(count)s cancelled.", cancelled) % {
            "count": number_format(cancelled, force_grouping=True)
        }
        if not_pending:
            message += " " + ngettext(
                "%(count)s could not be: already published or failed.",
                "%(count)s could not be: already published or failed.",
                not_pending,
            ) % {"count": number_format(not_pending, force_grouping=True)}
        self.message_user(request, message)
