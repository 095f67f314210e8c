"""The body a receiver gets, rendered once per delivery at fan-out. Pure functions.

The standard envelope (``events/envelope.py``) as JSON or as the same tree in XML under a
``<webhook>`` root, or the subscription's custom body template (``subscriptions/bodies.py``)
rendered with the envelope's data and checked to parse as the content type.
"""

from __future__ import annotations

from typing import Any

from events.envelope import to_json, to_xml
from subscriptions.bodies import CompiledBody, body_context, body_output_check, body_render

CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
}


def render(
    envelope: dict[str, Any],
    *,
    content_type: str,
    body: CompiledBody | None = None,
    unix_timestamp: int = 0,
) -> tuple[bytes, str]:
    """The body bytes and the ``Content-Type`` header value.

    Raises ``subscriptions.bodies.BodyTemplateError`` when a custom body cannot be rendered for
    this envelope or its output does not parse as the content type, and ``ValueError`` for an
    unknown content type.
    """
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"Unsupported content type {content_type!r}")
    header = CONTENT_TYPES[content_type]
    if body is not None:
        output = body_render(body, body_context(envelope, unix_timestamp))
        body_output_check(output, content_type)
        return output.encode(), header
    if content_type == "xml":
        return to_xml(envelope), header
    return to_json(envelope), header
