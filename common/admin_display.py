"""How the admin shows a moment: in a given time zone, in the active language's date format,
always with seconds and the zone named, so every page shows times one way.

``<time datetime="2026-03-29T01:30:00+01:00" title="Europe/Paris">29/03/2026 01:30:00 CET</time>``

And how it shows a yes/no value: Django's icon, named in the reader's language.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.templatetags.static import static
from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_noop, pgettext


def zone_get(name: str | None) -> dt.tzinfo:
    """The zone of that IANA name; the active zone for None or an unknown name."""
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.get_current_timezone()


def datetime_text(value: dt.datetime, zone: str | None = None) -> str:
    """``value`` in ``zone`` (the active zone if None) as plain text: date in the active
    language's short format, time with seconds, the zone's abbreviation."""
    tz = zone_get(zone)
    local = value.astimezone(tz)
    return (
        f"{date_format(local, 'SHORT_DATE_FORMAT')} {time_format(local, 'H:i:s')} "
        f"{local.tzname() or tz}"
    )


def datetime_in_zone(value: dt.datetime | None, zone: str | None = None) -> SafeString | str:
    """``datetime_text`` in a ``<time>`` element whose title is the zone's IANA name; an em dash
    for None."""
    if value is None:
        return "—"
    tz = zone_get(zone)
    local = value.astimezone(tz)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(timespec="seconds"),
        str(tz),
        datetime_text(value, zone),
    )


def boolean_icon(value: bool | None) -> SafeString:
    """Django's yes/no/unknown icon with its alt text in the active language.

    Django's own (``admin_list._boolean_icon``, for every boolean column and read-only boolean
    field) writes ``alt="True"``/``"False"``/``"None"`` whatever the language, so a screen
    reader says "False" on a French page. ``CommonConfig.ready`` puts this one in its place;
    English reads as before.
    """
    icon = {True: "yes", False: "no", None: "unknown"}[value]
    text = {
        True: pgettext("a yes/no icon's alt text", "True"),
        False: pgettext("a yes/no icon's alt text", "False"),
        None: pgettext("a yes/no icon's alt text", "None"),
    }[value]
    return format_html('<img src="{}" alt="{}">', static(f"admin/img/icon-{icon}.svg"), text)


# Django's title of a read-only object page, marked so that our catalogs word it for our models'
# names as they do "Add %s" and "Change %s" (subscriptions/admin/webhooks.py): French elides
# before a vowel, and Django's "Affichage de %s" would read "Affichage de envoi".
VIEW_TITLE = gettext_noop("View %s")
