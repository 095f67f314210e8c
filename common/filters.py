"""Date fields for query filters and admin forms: a date any school's zone can show, or a 400
(API) / a form error (admin) naming the problem, never a database error."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django_filters.fields import IsoDateTimeField

from webhook_engine.inputs import datetime_problem


def datetime_check(value: dt.datetime | None) -> None:
    """Raise a form ``ValidationError`` for a datetime no school's zone can show."""
    problem = (
        datetime_problem(value, subject=_("This date")) if isinstance(value, dt.datetime) else None
    )
    if problem:
        raise forms.ValidationError(problem, code="out_of_range")


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO-8601 datetime with its UTC offset, in the range every school's zone can show."""

    def to_python(self, value: Any) -> dt.datetime | None:
        # Django would read a date without its offset in the server's zone: a guess, hours off
        # for most schools.
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None  # not a date at all: the parent says so
            if parsed is not None and timezone.is_naive(parsed):
                raise forms.ValidationError(
                    _("The datetime has no time zone; give an aware datetime."), code="naive"
                )
        return super().to_python(value)

    def validate(self, value: Any) -> None:
        super().validate(value)
        datetime_check(value)


class BoundedDateTimeField(forms.DateTimeField):
    """A form's ``DateTimeField`` that refuses dates no school's zone can show."""

    def validate(self, value: Any) -> None:
        super().validate(value)
        datetime_check(value)


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO-8601 datetime filter (``?created_after=...``) refusing out-of-range dates."""

    field_class = BoundedIsoDateTimeField


class StrictFilterSet(django_filters.FilterSet):
    """A filter set that refuses a filter given with no value (``?status=``) or more than once
    (``?status=failed&status=pending``): the client meant something, and answering every row,
    or the rows of one value, instead would hide the mistake."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, filter_ in self.filters.items():
            if name not in self.data:
                continue
            value = str(self.data.get(name) or "").strip()
            problem = filter_repeated_problem(self.data, name) or filter_value_problem(value)
            if problem:
                self.form.add_error(name, problem)
                valid = False
            elif isinstance(filter_, django_filters.BooleanFilter) and value not in _BOOLEANS:
                self.form.add_error(name, _("Give true or false."))
                valid = False
        return valid


_BOOLEANS = {"true", "false", "True", "False", "1", "0"}


def filter_repeated_problem(params: Any, name: str) -> str | None:
    """Why a query filter given more than once is refused: only one of its values would be
    used, and a client meaning "either" would be answered for one of them without a word."""
    getlist = getattr(params, "getlist", None)
    if getlist is not None and len(getlist(name)) > 1:
        return _("Give this parameter once.")
    return None


def filter_value_problem(value: object) -> str | None:
    """Why a query filter given with ``value`` is refused: given empty (or blank)."""
    if str(value or "").strip():
        return None
    return _("Give a value, or leave the parameter out.")
