"""The only tags and filters a webhook body template can use.

A separate template library so the body engine (``sandbox.py``) can run without
Django's built-in tags: ``{% load %}``, ``{% include %}``, ``{% extends %}``, ``{% debug %}``,
``{% url %}``, ``{% csrf_token %}`` and the like would reach beyond the event's data.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django import template
from django.template import defaultfilters, defaulttags
from django.template.base import FilterExpression, Node, Parser, Token
from django.utils.html import escape

from ..envelope import xml_fragment
from ..vendors import vendor_type_name

register = template.Library()

ALLOWED_TAGS = (
    "autoescape",
    "comment",
    "cycle",
    "filter",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "now",
    "regroup",
    "resetcycle",
    "spaceless",
    "templatetag",
    "verbatim",
    "widthratio",
    "with",
)
# Django's filters whose output stays in proportion to their input. Left out: those that can
# blow a value up from the template alone (add, join, center, ljust, rjust, stringformat,
# floatformat, wordwrap, make_list) or build markup (linebreaks, urlize, unordered_list, ...).
ALLOWED_FILTERS = (
    "addslashes",
    "capfirst",
    "cut",
    "date",
    "default",
    "default_if_none",
    "dictsort",
    "dictsortreversed",
    "divisibleby",
    "escape",
    "escapejs",
    "first",
    "iriencode",
    "last",
    "length",
    "lower",
    "pluralize",
    "slice",
    "slugify",
    "striptags",
    "time",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "urlencode",
    "wordcount",
    "yesno",
)
# Loops in a body may run this many iterations in all: a template cannot stall a worker.
MAX_LOOP_ITERATIONS = 10_000
# A body may be this large; rendering stops as soon as it would grow past it.
MAX_OUTPUT_CHARACTERS = 1024 * 1024

for _name in ALLOWED_TAGS:
    if _name != "for":
        register.tag(_name, defaulttags.register.tags[_name])
for _name in ALLOWED_FILTERS:
    register.filter(_name, defaultfilters.register.filters[_name])


class LoopBudgetExceeded(Exception):
    """A body template ran more loop iterations than ``MAX_LOOP_ITERATIONS``."""


class OutputBudgetExceeded(Exception):
    """A body template produced more than ``MAX_OUTPUT_CHARACTERS``."""


class BudgetedNode(Node):
    """Renders the node it wraps and counts its output against the body's budget."""

    def __init__(self, inner: Node) -> None:
        self.inner = inner
        self.token = inner.token
        self.origin = inner.origin  # Django's debug annotation of errors reads both

    def render(self, context: template.Context) -> str:
        output = str(self.inner.render_annotated(context))
        used = int(context.render_context.get("output_characters") or 0) + len(output)
        if used > MAX_OUTPUT_CHARACTERS:
            raise OutputBudgetExceeded(
                f"The body is larger than {MAX_OUTPUT_CHARACTERS} characters."
            )
        context.render_context["output_characters"] = used
        return output


class _BudgetedForNode(defaulttags.ForNode):
    def render(self, context: template.Context) -> str:
        sequence = cast(FilterExpression, self.sequence).resolve(context, ignore_failures=True)
        size = len(sequence) if hasattr(sequence, "__len__") else 0
        used = int(context.render_context.get("loop_iterations") or 0) + size
        if used > MAX_LOOP_ITERATIONS:
            raise LoopBudgetExceeded(
                f"The template's loops ran more than {MAX_LOOP_ITERATIONS} times."
            )
        context.render_context["loop_iterations"] = used
        return super().render(context)


@register.tag("for")
def do_for(parser: Parser, token: Token) -> Node:
    node = defaulttags.do_for(parser, token)
    node.__class__ = _BudgetedForNode
    return node


@register.filter("json")
def json_filter(value: Any) -> str:
    """The value as JSON, for embedding in a JSON body: ``{"name": {{ data.name|json }}}``."""
    return json.dumps(value, ensure_ascii=False)


@register.filter("xml")
def xml_filter(value: Any) -> str:
    """The value as escaped XML text: ``<name>{{ data.name|xml }}</name>``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(escape(value))


@register.filter("xml_tree")
def xml_tree_filter(value: Any, name: str = "item") -> str:
    """An object as XML elements named after its keys (a list or scalar as ``<name>`` items)."""
    return xml_fragment(value, name=name)


@register.filter("entries")
def entries_filter(value: Any) -> list[tuple[str, Any]]:
    """The key/value pairs of an object: ``{% for key, value in data|entries %}``."""
    return list(value.items()) if isinstance(value, dict) else []


@register.filter("vendor")
def vendor_filter(event_type: str, vendor: str) -> str:
    """The vendor's own name for an event type (``course.created|vendor:"edusign"`` gives
    ``on_course_created``), or the type itself when the vendor has no such event."""
    return vendor_type_name(event_type, vendor)
