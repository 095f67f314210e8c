"""The body a receiver gets: the one render-and-check step. Pure functions.

Used at fan-out (each delivery's body, rendered once), by the body preview, by Send Test and by
the check a template passes when a webhook is saved, so they can never disagree. Under the
standard profile: the envelope (``envelope.py``) as JSON or as the same tree in XML under a
``<webhook>`` root, or a custom body template (``bodies``) rendered with the envelope's data and
checked to parse as the content type. Under a vendor profile (``vendors``): the vendor's own
body for the event type. Every XML body is a document with its ``<?xml ...?>`` declaration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from .bodies import BodyTemplateError, CompiledBody, body_compile, body_context, body_output_check
from .bodies import body_render as _template_render
from .bodies.sandbox import JSON_INVALID, XML_INVALID
from .envelope import json_stringify, to_json, to_xml
from .vendors import STANDARD, ProfileEventMissing, profile_body, profile_get

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
# A body that starts with its own declaration (not a processing instruction such as
# ``<?xml-stylesheet ...?>``: XML 1.0, 2.8, the declaration is "<?xml" then white space).
_XML_DECLARED = re.compile(r"<\?xml[ \t\r\n]")

CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
}
# The ``unix_timestamp`` a preview or a save-time check renders samples with.
SAMPLE_UNIX_TIMESTAMP = 1_700_000_000


def render(
    envelope: dict[str, Any],
    *,
    content_type: str,
    body: CompiledBody | None = None,
    unix_timestamp: int = 0,
    profile: str = STANDARD,
) -> tuple[bytes, str]:
    """The body bytes and the ``Content-Type`` header value.

    Raises ``BodyTemplateError`` when a custom body cannot be rendered for this envelope or its
    output does not parse as the content type, or when the profile's vendor has no event for
    this type; ``ValueError`` for an unknown content type or profile, a content type the
    profile's vendor does not send, or a body template under a vendor profile.
    """
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"Unsupported content type {content_type!r}")
    header = CONTENT_TYPES[content_type]
    if profile != STANDARD:
        return _vendor_render(envelope, content_type=content_type, body=body, profile=profile)
    if body is not None:
        output = _template_render(body, body_context(envelope, unix_timestamp))
        if content_type == "xml":
            # A byte order mark (a pasted template's) would be text before the root once the
            # declaration goes first; the body is UTF-8 either way.
            output = output.removeprefix("\ufeff")
        body_output_check(output, content_type)
        if content_type == "xml" and not _XML_DECLARED.match(output):
            output = XML_DECLARATION + output
        return output.encode(), header
    if content_type == "xml":
        return to_xml(envelope), header
    return to_json(envelope), header


def _vendor_render(
    envelope: dict[str, Any], *, content_type: str, body: CompiledBody | None, profile: str
) -> tuple[bytes, str]:
    vendor = profile_get(profile)
    if body is not None:
        raise ValueError(f"The {vendor.label} profile sends {vendor.label}'s body, not a template.")
    if content_type not in vendor.content_types:
        raise ValueError(f"{vendor.label} sends {', '.join(vendor.content_types)} only.")
    try:
        value = profile_body(profile, envelope)
    except ProfileEventMissing as exc:
        raise BodyTemplateError(
            gettext_noop(
                "%(vendor)s has no event for %(type)s; a webhook with the %(vendor)s profile "
                "receives only %(vendor)s's events."
            ),
            {"vendor": vendor.label, "type": envelope["type"]},
        ) from exc
    if content_type == "xml":
        return to_xml(value), CONTENT_TYPES[content_type]
    return json_stringify(value), CONTENT_TYPES[content_type]


def render_with_template(
    envelope: dict[str, Any],
    *,
    content_type: str,
    template: str,
    unix_timestamp: int,
    profile: str = STANDARD,
) -> tuple[bytes, str]:
    """``render`` with a template's source (compiled once per process and cached); an empty
    or blank template renders the standard envelope, or the vendor's body under a vendor
    profile. Raises as ``render`` and ``body_compile``.
    """
    compiled = body_compile(template) if template.strip() else None
    return render(
        envelope,
        content_type=content_type,
        body=compiled,
        unix_timestamp=unix_timestamp,
        profile=profile,
    )


def body_check_samples(
    source: str, content_type: str, samples: Iterable[tuple[str, dict[str, Any]]]
) -> list[str]:
    """Messages for a template that fails to compile, or fails for any (event type, envelope),
    in the active language (this runs while a person saves or previews).

    An empty list means the template is usable for every sample.
    """
    try:
        compiled = body_compile(source)
    except BodyTemplateError as exc:
        return [exc.message()]
    errors = []
    for event_type, envelope in samples:
        try:
            render(
                envelope,
                content_type=content_type,
                body=compiled,
                unix_timestamp=SAMPLE_UNIX_TIMESTAMP,
            )
        except BodyTemplateError as exc:
            errors.append(_sample_problem(event_type, exc))
    return errors


def _sample_problem(event_type: str, exc: BodyTemplateError) -> str:
    params = {**exc.params, "type": event_type}
    if exc.text == JSON_INVALID:
        return (
            _(
                "With the sample payload of %(type)s, the body is not valid JSON: %(error)s "
                "at line %(line)s column %(column)s%(quote)s"
            )
            % params
        )
    if exc.text == XML_INVALID:
        return (
            _(
                "With the sample payload of %(type)s, the body is not valid XML: %(error)s "
                "at line %(line)s column %(column)s%(quote)s"
            )
            % params
        )
    return _("With the sample payload of %(type)s: %(problem)s") % {
        "type": event_type,
        "problem": exc.message(),
    }
