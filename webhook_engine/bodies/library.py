"""The only tags and filters a webhook body template can use.

A separate template library so the body engine (``sandbox.py``) can run without
Django's built-in tags: ``{% load %}``, ``{% include %}``, ``{% extends %}``, ``{% debug %}``,
``{% url %}``, ``{% csrf_token %}`` and the like would reach beyond the event's data.
"""

from __future__ import annotations

import contextvars
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from django import template
from django.template import defaultfilters, defaulttags
from django.template.base import FilterExpression, Node, Parser, Token
from django.utils.html import escape
from django.utils.translation import gettext_noop

from ..envelope import xml_carriage_returns_escape, xml_fragment, xml_text
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
# No value a filter makes may be larger than a whole body (so a chain such as
# |json|json|json..., which doubles the backslashes at each step, stops at the first value past
# it instead of growing to gigabytes), ...
MAX_VALUE_CHARACTERS = MAX_OUTPUT_CHARACTERS
# ... the filters and the output of one render may read and write this many characters in all
# (the work: a loop applying |upper to a large value 10,000 times writes little but works much),
# ...
MAX_WORK_CHARACTERS = 16 * 1024 * 1024
# ... and one render stops after this long whatever it does, in the web process (preview, the
# check on save) as in the worker (fan-out).
MAX_RENDER_SECONDS = 2.0


class BudgetExceeded(Exception):
    """A render went over one of its budgets. ``text`` is an English message marked for
    translation (``gettext_noop``) and ``params`` its values; str() is the English sentence."""

    def __init__(self, text: str, params: dict[str, Any]) -> None:
        self.text = text
        self.params = params
        super().__init__(text % params)


class LoopBudgetExceeded(BudgetExceeded):
    """A body template ran more loop iterations than ``MAX_LOOP_ITERATIONS``."""


class OutputBudgetExceeded(BudgetExceeded):
    """A body template produced more than ``MAX_OUTPUT_CHARACTERS``."""


class WorkBudgetExceeded(BudgetExceeded):
    """A body template made a value too large, worked through too many characters, or ran
    too long (``MAX_VALUE_CHARACTERS``, ``MAX_WORK_CHARACTERS``, ``MAX_RENDER_SECONDS``)."""


class _RenderBudget:
    """What one render has spent: characters read and written by filters and output nodes."""

    def __init__(self, deadline: float) -> None:
        self.work = 0
        self.deadline = deadline

    def charge(self, characters: int) -> None:
        if characters > MAX_VALUE_CHARACTERS:
            raise WorkBudgetExceeded(
                gettext_noop(
                    "A value in the template grew past %(limit)s characters; chained filters "
                    "such as |json|json multiply a value's size."
                ),
                {"limit": MAX_VALUE_CHARACTERS},
            )
        self.work += characters
        if self.work > MAX_WORK_CHARACTERS:
            raise WorkBudgetExceeded(
                gettext_noop(
                    "The template worked through more than %(limit)s characters; apply fewer "
                    "filters to large values, or fewer times."
                ),
                {"limit": MAX_WORK_CHARACTERS},
            )
        if time.monotonic() > self.deadline:
            raise WorkBudgetExceeded(
                gettext_noop("Rendering the template took longer than %(limit)s seconds."),
                {"limit": f"{MAX_RENDER_SECONDS:g}"},
            )


_BUDGET: contextvars.ContextVar[_RenderBudget | None] = contextvars.ContextVar(
    "webhook_body_budget", default=None
)


@contextmanager
def render_budget() -> Iterator[None]:
    """Count one render's work against the budget (``sandbox.body_render`` opens it)."""
    token = _BUDGET.set(_RenderBudget(time.monotonic() + MAX_RENDER_SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _size(value: Any) -> int:
    """How many characters (or items) a value is, for the budget."""
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    return 1


def budget_charge(*values: Any) -> None:
    """Charge values read or written to the current render's budget (none outside a render)."""
    budget = _BUDGET.get()
    if budget is not None:
        for value in values:
            budget.charge(_size(value))


def _budgeted(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that charges what it reads and what it makes to the render's budget."""

    @functools.wraps(func)
    def filter_budgeted(value: Any, *args: Any, **kwargs: Any) -> Any:
        budget_charge(value)
        result = func(value, *args, **kwargs)
        budget_charge(result)
        return result

    return filter_budgeted


def _register_filter(name: str, func: Callable[..., Any]) -> None:
    flags = {
        flag: getattr(func, flag)
        for flag in ("is_safe", "needs_autoescape", "expects_localtime")
        if hasattr(func, flag)
    }
    register.filter(name, _budgeted(func), **flags)


for _name in ALLOWED_TAGS:
    if _name != "for":
        register.tag(_name, defaulttags.register.tags[_name])
for _name in ALLOWED_FILTERS:
    _register_filter(_name, defaultfilters.register.filters[_name])


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
                gettext_noop("The body is larger than %(limit)s characters."),
                {"limit": MAX_OUTPUT_CHARACTERS},
            )
        budget_charge(output)
        context.render_context["output_characters"] = used
        return output


class _BudgetedForNode(defaulttags.ForNode):
    def render(self, context: template.Context) -> str:
        sequence = cast(FilterExpression, self.sequence).resolve(context, ignore_failures=True)
        size = len(sequence) if hasattr(sequence, "__len__") else 0
        used = int(context.render_context.get("loop_iterations") or 0) + size
        if used > MAX_LOOP_ITERATIONS:
            raise LoopBudgetExceeded(
                gettext_noop("The template's loops ran more than %(limit)s times."),
                {"limit": MAX_LOOP_ITERATIONS},
            )
        context.render_context["loop_iterations"] = used
        return super().render(context)


@register.tag("for")
def do_for(parser: Parser, token: Token) -> Node:
    node = defaulttags.do_for(parser, token)
    node.__class__ = _BudgetedForNode
    return node


def json_filter(value: Any) -> str:
    """The value as JSON, for embedding in a JSON body: ``{"name": {{ data.name|json }}}``."""
    return json.dumps(value, ensure_ascii=False)


def xml_filter(value: Any) -> str:
    """The value as escaped XML text: ``<name>{{ data.name|xml }}</name>``; characters XML 1.0
    forbids become U+FFFD and a carriage return ``&#13;``, as in the standard XML envelope."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return xml_carriage_returns_escape(str(escape(xml_text(str(value)))))


def xml_tree_filter(value: Any, name: str = "item") -> str:
    """An object as XML elements named after its keys (a list or scalar as ``<name>`` items)."""
    return xml_fragment(value, name=name)


def entries_filter(value: Any) -> list[tuple[str, Any]]:
    """The key/value pairs of an object: ``{% for key, value in data|entries %}``."""
    return list(value.items()) if isinstance(value, dict) else []


def vendor_filter(event_type: str, vendor: str) -> str:
    """The vendor's own name for an event type (``course.created|vendor:"edusign"`` gives
    ``on_course_created``), or the type itself when the vendor has no such event."""
    return vendor_type_name(event_type, vendor)


_OWN_FILTERS: dict[str, Callable[..., Any]] = {
    "json": json_filter,
    "xml": xml_filter,
    "xml_tree": xml_tree_filter,
    "entries": entries_filter,
    "vendor": vendor_filter,
}
for _name, _function in _OWN_FILTERS.items():
    _register_filter(_name, _function)
