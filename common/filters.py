"""Date fields for query filters and admin forms: a date any school's zone can show, or a 400
(API) / a form error (admin) naming the problem, never a database error."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from webhook_engine.inputs import datetime_problem


def datetime_check(value: dt.datetime | None) -> None:
    """Raise a form ``ValidationError`` for a datetime no school's zone can show."""
    problem = datetime_problem(value) if isinstance(value, dt.datetime) else None
    if problem:
        raise forms.ValidationError(f"This date {problem}.", code="out_of_range")


class BoundedIsoDateTimeField(IsoDateTimeField):
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
