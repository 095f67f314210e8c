"""Form fields shared by the admin's apps."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from webhook_engine.inputs import MAX_JSON_DEPTH


class NestingSafeJSONField(forms.JSONField):
    """Django's JSON form field, with JSON nested deeper than Python's parser goes refused as a
    form error (as the API's parser refuses it) and shown back as typed: Django's field lets
    the parser's RecursionError through, a 500."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(
                _("The JSON is nested more than %(limit)s levels deep.")
                % {"limit": MAX_JSON_DEPTH},
                code="invalid",
            ) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)
