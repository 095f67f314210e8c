"""Who sees what in the admin: every model admin shows only the rows of the schools its user may
see (``schools.selectors.school_ids_visible_to``), everywhere a row can show up.

``SchoolScopedAdmin`` is the base of every model admin with school data. It scopes the list and
the object pages (another school's object is a 404, exactly like one that does not exist), the
choices of foreign keys, the autocomplete answers (Django's autocomplete view asks the target
model's admin for its queryset), the "school" list filter, and the actions (Django applies them
to ``get_queryset``, so forged ids of another school select nothing).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from schools.models import School
from schools.selectors import school_ids_administered_by, school_ids_visible_to

_CACHE_ATTRIBUTE = "_webhooks_school_ids"
_ADMINISTERED_ATTRIBUTE = "_webhooks_administered"


def request_school_ids(request: HttpRequest) -> list[int] | None:
    """The schools the request's user may see (None: all), looked up once per request."""
    if not hasattr(request, _CACHE_ATTRIBUTE):
        setattr(request, _CACHE_ATTRIBUTE, school_ids_visible_to(user=request.user))
    return getattr(request, _CACHE_ATTRIBUTE)


def schools_visible(request: HttpRequest) -> QuerySet[School]:
    """The schools the request's user may see, by name."""
    school_ids = request_school_ids(request)
    schools = School.objects.order_by("name", "pk")
    return schools if school_ids is None else schools.filter(pk__in=school_ids)


def school_id_parse(value: str) -> int | None:
    """The school id a request parameter gives, or None when it is not one: ASCII digits only
    (``isdigit()`` alone admits digits ``int()`` refuses, such as "²")."""
    return int(value) if value.isascii() and value.isdigit() else None


class SchoolListFilter(admin.SimpleListFilter):
    """Filter by school, offering only the schools the user may see (and shown only when there
    is a choice to make)."""

    title = gettext_lazy("school")
    parameter_name = "school"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(school.pk), school.name) for school in schools_visible(request)[:200]]

    def has_output(self) -> bool:
        return len(self.lookup_choices) > 1

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value is None:
            return queryset
        school_id = school_id_parse(value)
        if school_id is None:
            return queryset.none()
        return queryset.filter(**{self.model_admin_school_field: school_id})

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        self.model_admin_school_field = f"{model_admin.school_field}__pk"
        super().__init__(request, params, model, model_admin)


# Fields no URL may filter on, wherever they appear in a lookup path: a filter that matches or
# not is an oracle that reads a value character by character (?custom_headers__X__startswith=a).
UNFILTERABLE_FIELDS = frozenset(
    {
        "custom_headers",
        "custom_headers_encrypted",
        "secret_headers",
        "request_headers",
        "request_url",
        "url",
        "last_error",
        "error_message",
        "response_headers",
        "response_body",
        "body",
        "basic_auth_password_encrypted",
        "secret_encrypted",
        "key_hash",
        "password",
    }
)


def school_ids_administered(request: HttpRequest) -> list[int] | None:
    """The schools whose secrets and keys the request's user may manage (None: all)."""
    if not hasattr(request, _ADMINISTERED_ATTRIBUTE):
        setattr(request, _ADMINISTERED_ATTRIBUTE, school_ids_administered_by(user=request.user))
    administered: list[int] | None = getattr(request, _ADMINISTERED_ATTRIBUTE)
    return administered


def administers(request: HttpRequest, school_id: int | None) -> bool:
    """Whether the request's user manages that school (is its admin, or a superuser)."""
    administered = school_ids_administered(request)
    return administered is None or (school_id is not None and school_id in administered)


def administers_all_visible(request: HttpRequest) -> bool:
    """Whether the user manages every school they see (superusers, school admins) rather than
    only seeing some (support staff): then URLs and answers are shown unmasked."""
    administered = school_ids_administered(request)
    if administered is None:
        return True
    visible = request_school_ids(request)
    return visible is not None and set(visible) <= set(administered)


class IdAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete select, drawing a posted value that is not an id (``school=abc``)
    as no choice: the stock widget looks its label up in the database, where such a value
    fails, so a form with that mistake answered 500 instead of showing its errors."""

    def optgroups(self, name: str, value: Any, attr: Any = None) -> Any:
        target = self.field.target_field
        ids = []
        for item in value:
            try:
                target.get_prep_value(item)
            except (TypeError, ValueError):
                continue
            ids.append(item)
        return super().optgroups(name, ids, attr)


def autocomplete_widget(
    model_admin: Any, db_field: Any, request: HttpRequest, kwargs: dict[str, Any]
) -> None:
    """Give ``db_field`` an ``IdAutocompleteSelect`` when the admin (or inline) searches it as
    you type, as ``formfield_for_foreignkey`` would give Django's own."""
    if "widget" not in kwargs and db_field.name in model_admin.get_autocomplete_fields(request):
        kwargs["widget"] = IdAutocompleteSelect(
            db_field, model_admin.admin_site, using=kwargs.get("using")
        )


class SchoolScopedAdmin(admin.ModelAdmin):
    """A model admin that shows the user only their schools' rows (see the module docstring).

    ``school_field`` is the lookup path from the model to its school (``"pk"`` for School).
    """

    school_field = "school"

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if any(part in UNFILTERABLE_FIELDS for part in lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)

    def school_ids(self, request: HttpRequest) -> list[int] | None:
        return request_school_ids(request)

    def sees_several_schools(self, request: HttpRequest) -> bool:
        school_ids = self.school_ids(request)
        return school_ids is None or len(school_ids) > 1

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        school_ids = self.school_ids(request)
        if school_ids is None:
            return queryset
        return queryset.filter(**{f"{self.school_field}__in": school_ids})

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scope(request, super().get_queryset(request))

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        """The object if the user may see it; a 404 otherwise, whether it exists or not."""
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with this ID.")
        return obj

    def school_id_of(self, obj: Model) -> int | None:
        """The school of an object, following ``school_field``."""
        parts = self.school_field.split("__")
        if parts == ["pk"]:
            return obj.pk
        value: Any = obj
        for part in parts[:-1]:
            value = getattr(value, part)
        return getattr(value, f"{parts[-1]}_id")

    def _obj_visible(self, request: HttpRequest, obj: Model | None) -> bool:
        school_ids = self.school_ids(request)
        return obj is None or school_ids is None or self.school_id_of(obj) in school_ids

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_view_permission(request, obj) and self._obj_visible(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._obj_visible(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._obj_visible(request, obj)

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> Any:
        """An action on ids that are not ids (a forged or garbled form) is refused with a message
        instead of failing when the database reads them."""
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        invalid = []
        for value in selected:
            try:
                self.opts.pk.to_python(value)
            except (ValidationError, ValueError, TypeError):
                invalid.append(value)
        if invalid:
            self.message_user(
                request,
                _("%(ids)s: not an id of this list; nothing was done.")
                % {"ids": ", ".join(repr(value) for value in invalid[:3])},
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        response: HttpResponse | None = super().response_action(request, queryset, *args, **kwargs)
        return response

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """Foreign-key choices: the user's schools, or the related admin's (scoped) rows."""
        autocomplete_widget(self, db_field, request, kwargs)
        related = db_field.related_model
        if related is School:
            kwargs.setdefault("queryset", schools_visible(request))
        elif self.admin_site.is_registered(related):
            related_admin = self.admin_site.get_model_admin(related)
            if isinstance(related_admin, SchoolScopedAdmin):
                kwargs.setdefault("queryset", related_admin.get_queryset(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
