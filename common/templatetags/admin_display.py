"""Template filters for the admin: ``{{ value|in_zone:school.timezone }}``,
``{{ count|grouped }}``."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.formats import number_format
from django.utils.safestring import SafeString

from common.admin_display import datetime_in_zone

register = template.Library()


@register.filter
def in_zone(value: dt.datetime | None, zone: str | None = None) -> SafeString | str:
    """The moment in that zone (the active one if empty), with seconds and the zone named."""
    return datetime_in_zone(value, zone or None)


@register.filter
def grouped(value: int) -> str:
    """A count as the active language writes it, thousands grouped (10,000; 10 000; 10.000):
    for the number shown in a ``{% blocktranslate count %}`` sentence, whose counter picks the
    plural form but is written without grouping."""
    return number_format(value, force_grouping=True)
