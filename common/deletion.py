"""Deleting an object with millions of dependent rows (a school with its event and delivery log).

Django's ``delete()`` and the admin's delete page collect every dependent row first: they read
each one (an event's data, a delivery's body) into memory and then name them all in one
statement, which PostgreSQL refuses past 65,535 parameters. Here each relation is one statement
over a subquery, following the same ``on_delete`` rules, and the confirmation page counts rows
instead of listing them. Generic over the models' metadata: ``common`` names no app.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models.deletion import ProtectedError, RestrictedError
from django.db.models.signals import post_delete, pre_delete
from django.http import HttpRequest


def _dependents(model: type[models.Model]) -> Iterator[Any]:
    """The relations whose rows refer to ``model``'s (many-to-many tables aside)."""
    for relation in model._meta.get_fields(include_hidden=True):
        if relation.auto_created and not relation.concrete and not relation.many_to_many:
            yield relation


def _rows_of(relation: Any, keys: models.QuerySet[Any], using: str) -> models.QuerySet[Any]:
    return relation.related_model._base_manager.using(using).filter(
        **{f"{relation.field.name}__in": keys}
    )


def dependents_delete(queryset: models.QuerySet[Any]) -> None:
    """Delete, empty or refuse what refers to the rows of ``queryset``, as each relation's
    ``on_delete`` says, without loading a row; the rows themselves are left to the caller (its
    ``delete()`` then finds nothing else to collect and sends its signals). Models with delete
    signals are deleted through Django's collector, so that they get them. Call it in a
    transaction: it is all or nothing only then."""
    using = queryset.db
    keys = queryset.values("pk")
    for relation in _dependents(queryset.model):
        rows = _rows_of(relation, keys, using)
        on_delete = relation.field.remote_field.on_delete
        if on_delete is models.DO_NOTHING:
            continue
        if on_delete is models.CASCADE:
            related_model = relation.related_model
            if pre_delete.has_listeners(related_model) or post_delete.has_listeners(related_model):
                rows.delete()
            else:
                dependents_delete(rows)
                rows._raw_delete(using)
        elif on_delete is models.SET_NULL:
            rows.update(**{relation.field.name: None})
        elif rows.exists():  # PROTECT, RESTRICT, SET_DEFAULT, SET(): left to Django
            error = RestrictedError if on_delete is models.RESTRICT else ProtectedError
            raise error(
                f"Cannot delete: {relation.related_model._meta.label} rows refer to them.",
                set(),
            )


def deleted_objects_counted(
    objs: Iterable[models.Model], request: HttpRequest, admin_site: admin.AdminSite
) -> tuple[list[str], dict[str, int], set[str], list[str]]:
    """What ``ModelAdmin.get_deleted_objects`` returns, with the dependent rows counted per model
    instead of listed one by one (the stock page reads and links each of them: minutes and
    gigabytes for a school with a large log). As the stock page does, a model whose admin
    refuses deletion to this user, and that has rows here, is named in the permissions lacking;
    rows of relations that protect them are named as protected."""
    objs = list(objs)
    if not objs:
        return [], {}, set(), []
    model = type(objs[0])
    using = objs[0]._state.db or "default"
    keys = model._base_manager.using(using).filter(pk__in=[obj.pk for obj in objs]).values("pk")
    counts: dict[str, int] = {str(model._meta.verbose_name_plural): len(objs)}
    perms_needed: set[str] = set()
    protected: list[str] = []
    for relation in _dependents(model):
        on_delete = relation.field.remote_field.on_delete
        if on_delete in (models.DO_NOTHING, models.SET_NULL):
            continue
        related_model = relation.related_model
        count = _rows_of(relation, keys, using).count()
        if not count:
            continue
        name = str(related_model._meta.verbose_name_plural)
        if on_delete is not models.CASCADE:
            protected.append(f"{name}: {count}")
            continue
        counts[name] = counts.get(name, 0) + count
        related_admin = admin_site._registry.get(related_model)
        if related_admin is not None and not related_admin.has_delete_permission(request):
            perms_needed.add(str(related_model._meta.verbose_name))
    return [str(obj) for obj in objs], counts, perms_needed, protected
