"""Schools, who administers them, and their API keys (and the platform's keys, for superusers).

A key is shown once, on the page right after it is created (never stored, never in a message
cookie); the lists show its prefix, when it was last used and whether it is revoked.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from audit.services import actor_user
from common.admin_display import datetime_in_zone
from common.deletion import deleted_objects_counted, dependents_delete

from .admin_scoping import (
    SchoolListFilter,
    SchoolScopedAdmin,
    autocomplete_widget,
    school_ids_administered,
)
from .models import SCHOOL_ADMINS_GROUP, SUPPORT_GROUP, ApiKey, Membership, PlatformKey, School
from .selectors import api_keys_active_count
from .services import (
    api_key_create,
    api_key_revoke,
    platform_key_create,
    platform_key_revoke,
    school_admin_grant,
    school_admin_grant_check,
    school_admin_revoke,
    support_staff_grant_check,
)

_CREATED_KEY = "_webhooks_created_key"


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "role"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # Remove the row and add another instead: changing who it is would skip the grant.
            self.fields["user"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        user = cleaned.get("user")
        if user is not None and self.instance.pk is None:
            try:
                school_admin_grant_check(user=user)
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from exc
        return cleaned


class MembershipInline(admin.TabularInline):
    """The school's admins. Adding one here also makes the user staff and a member of the
    "School admins" group (``school_admin_grant``); removing their last school takes them out of
    it (``school_admin_revoke``)."""

    model = Membership
    form = MembershipForm
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]
    verbose_name = gettext_lazy("school admin")
    verbose_name_plural = gettext_lazy("school admins")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        autocomplete_widget(self, db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(School)
class SchoolAdmin(SchoolScopedAdmin):
    school_field = "pk"
    list_display = ["name", "slug", "timezone", "language", "created_at"]
    list_filter = ["language"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """What deleting schools removes, counted per kind of row: the stock page read and
        listed every event, delivery and attempt of the school (a school with 400,000 events
        took 40 s and 1.7 GB, then failed)."""
        return deleted_objects_counted(objs, request, self.admin_site)

    def delete_model(self, request: HttpRequest, obj: School) -> None:
        with transaction.atomic():
            dependents_delete(School.objects.filter(pk=obj.pk))
            obj.delete()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[School]) -> None:
        with transaction.atomic():
            dependents_delete(queryset)
            queryset.delete()

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        instances = formset.save(commit=False)
        for membership in formset.deleted_objects:
            school_admin_revoke(membership=membership)
        for membership in instances:
            if membership.pk is None:
                school_admin_grant(user=membership.user, school=form.instance)
            else:
                membership.save(update_fields=["role"])


class KeyStateFilter(admin.SimpleListFilter):
    title = gettext_lazy("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", _("Active")), ("revoked", _("Revoked"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class KeyAdminMixin:
    """What school and platform keys share: show once, list, revoke."""

    message_user: Any
    admin_site: Any
    opts: Any

    @admin.display(description=gettext_lazy("Key"))
    def prefix_display(self, obj: ApiKey | PlatformKey) -> str:
        return format_html("<code>{}…</code>", obj.prefix)

    @admin.display(description=gettext_lazy("State"), ordering="revoked_at")
    def state_display(self, obj: ApiKey | PlatformKey) -> str:
        if obj.revoked_at:
            zone = obj.school.timezone if isinstance(obj, ApiKey) else None
            return format_html(_("Revoked {}"), datetime_in_zone(obj.revoked_at, zone))
        return _("Active")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key never changes: it is revoked (an action) and replaced

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked keys stay listed

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return self.add_fields  # type: ignore[attr-defined]
        return [*self.add_fields, "prefix_display", "created_at", "last_used_at", "revoked_at"]  # type: ignore[attr-defined]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["prefix_display", "created_at", "last_used_at", "revoked_at"]

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        key = getattr(request, _CREATED_KEY, None)
        if key is None:  # the service refused it (see save_model)
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            )
        context = {
            **self.admin_site.each_context(request),
            "title": _("%(kind)s created") % {"kind": capfirst(self.opts.verbose_name)},
            "opts": self.opts,
            "original": obj,
            "key": key,
            "changelist_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"
            ),
        }
        response = TemplateResponse(request, "admin/schools/key_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def _adopt(self, obj: Any, created: Any, key: str, request: HttpRequest) -> None:
        """Make the form's instance the created key, so the admin logs and shows that one."""
        obj.pk, obj.prefix, obj.key_hash = created.pk, created.prefix, created.key_hash
        obj.created_at = created.created_at
        obj._state.adding, obj._state.db = False, created._state.db
        setattr(request, _CREATED_KEY, key)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["school", "name"]
        help_texts = {"name": gettext_lazy("What uses the key, such as the integration's name.")}

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        school = cleaned.get("school")
        limit = settings.WEBHOOKS_API_KEYS_PER_SCHOOL
        if school is not None and api_keys_active_count(school=school) >= limit:
            raise ValidationError(
                _("%(school)s already has %(limit)s active API keys; revoke one first.")
                % {"school": school.name, "limit": limit}
            )
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(KeyAdminMixin, SchoolScopedAdmin):
    """A school's API keys: its admins create and revoke them; support staff only see the list
    (a key would let them read the school's webhook secrets through the API)."""

    form = ApiKeyForm
    add_fields = ["school", "name"]
    list_display = ["name", "prefix_display", "created_at", "last_used_at", "state_display"]
    list_filter = [KeyStateFilter, SchoolListFilter]
    list_select_related = ["school"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if self.sees_several_schools(request):
            columns.insert(1, "school")
        return columns

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # Several schools (superusers, admins of a group of schools): search them as you type.
        return ["school"] if self.sees_several_schools(request) else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        administered = school_ids_administered(request)
        if db_field.name == "school" and field is not None and administered is not None:
            # A key reads the school's webhook secrets through the API: only its admins make one.
            field.queryset = field.queryset.filter(pk__in=administered)
        return field

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        school_ids = self.school_ids(request)
        if school_ids is not None and len(school_ids) == 1:
            initial.setdefault("school", school_ids[0])
        return initial

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        try:
            api_key, key = api_key_create(
                school=obj.school, name=obj.name, actor=actor_user(request.user)
            )
        except ValidationError as exc:  # the limit was reached by another request meanwhile
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        self._adopt(obj, api_key, key, request)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if obj.pk is not None:
            return super().log_addition(request, obj, message)
        return None

    @admin.action(description=gettext_lazy("Revoke the selected keys"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, actor=actor_user(request.user))
            count += 1
        self.message_user(
            request,
            ngettext(
                "%(count)s key revoked; requests with it now get a 401.",
                "%(count)s keys revoked; requests with them now get a 401.",
                count,
            )
            % {"count": number_format(count, force_grouping=True)},
        )


@admin.register(PlatformKey)
class PlatformKeyAdmin(KeyAdminMixin, admin.ModelAdmin):
    """The platform's own keys (publish events for any school): superusers only, as no group
    has permissions on them."""

    add_fields = ["name"]
    list_display = ["name", "prefix_display", "created_at", "last_used_at", "state_display"]
    list_filter = [KeyStateFilter]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: PlatformKey, form: Any, change: bool) -> None:
        platform_key, key = platform_key_create(name=obj.name)
        self._adopt(obj, platform_key, key, request)

    @admin.action(description=gettext_lazy("Revoke the selected keys"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[PlatformKey]) -> None:
        count = 0
        for platform_key in queryset.filter(revoked_at__isnull=True):
            platform_key_revoke(platform_key=platform_key)
            count += 1
        self.message_user(
            request,
            ngettext(
                "%(count)s key revoked; requests with it now get a 401.",
                "%(count)s keys revoked; requests with them now get a 401.",
                count,
            )
            % {"count": number_format(count, force_grouping=True)},
        )


class StaffUserChangeForm(UserChangeForm):
    """Django's user form, refusing what ``staff_grant`` and the schools page refuse: one
    account both support staff (who see every school) and a school admin (who change their
    school's webhooks and manage its secrets), which would give the union of both over every
    school."""

    def clean_groups(self) -> Any:
        groups = self.cleaned_data.get("groups")
        names = {group.name for group in groups} if groups is not None else set()
        if SUPPORT_GROUP in names:
            if SCHOOL_ADMINS_GROUP in names:
                raise forms.ValidationError(
                    _(
                        "Support staff and school admins must be different accounts: choose "
                        "one of the two groups."
                    )
                )
            try:
                support_staff_grant_check(user=self.instance)
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from exc
        return groups


class StaffUserAdmin(UserAdmin):
    form = StaffUserChangeForm


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), StaffUserAdmin)
