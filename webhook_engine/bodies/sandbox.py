"""Custom webhook bodies (BrainCert's "Webhook Body"): Django-template-language templates.

A body template is rendered with plain data only, never a model or a request::

    id, type, resource, action, timestamp, unix_timestamp, school {id, slug}, data

(``resource`` and ``action`` are the event type's parts: ``course`` and ``created`` for
``course.created``). It can use the tags in ``library.ALLOWED_TAGS``, Django's built-in
filters, and ``json``, ``xml``, ``xml_tree``, ``entries`` and ``vendor``. Anything else, a name
outside the data, or output that does not parse as the webhook's content type is refused with
the line to fix. No database access here.
"""

from __future__ import annotations

import json
import re
import sys
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from django.template import Context, Engine, TemplateSyntaxError
from django.template.base import FilterExpression, Node, NodeList, Variable
from django.template.smartif import TokenBase
from django.utils.translation import gettext, gettext_noop

from .library import (
    ALLOWED_TAGS,
    BudgetedNode,
    LoopBudgetExceeded,
    OutputBudgetExceeded,
    WorkBudgetExceeded,
    render_budget,
)

CONTEXT_NAMES = (
    "id",
    "type",
    "resource",
    "action",
    "timestamp",
    "unix_timestamp",
    "school",
    "data",
)
MAX_TEMPLATE_CHARACTERS = 20_000


class BodyTemplateError(ValueError):
    """A body template that cannot be used, with a message a school admin can act on.

    ``text`` is an English message marked for translation (``gettext_noop``), ``params`` its
    values. str() is the English sentence (a delivery that failed stores it); ``message()`` is
    the same in the active language, for the person saving or previewing the template.
    """

    def __init__(self, text: str, params: dict[str, Any] | None = None) -> None:
        self.text = text
        self.params = params or {}
        super().__init__(text % self.params if params else text)

    def message(self) -> str:
        """The message in the active language."""
        translated = gettext(self.text)
        return translated % self.params if self.params else translated


class _SandboxEngine(Engine):
    default_builtins: ClassVar[list[str]] = []  # none of Django's built-in tags and filters


_ENGINE = _SandboxEngine(
    debug=True,  # syntax errors carry their line
    autoescape=False,  # bodies are JSON or XML, not HTML: escaping is the json/xml filters' job
    libraries={},
    builtins=["webhook_engine.bodies.library"],
    loaders=[("django.template.loaders.locmem.Loader", {})],
)


@dataclass(frozen=True)
class CompiledBody:
    source: str
    template: Any


@lru_cache(maxsize=256)
def body_compile(source: str) -> CompiledBody:
    """Parse a body template and check it uses only the event's data (cached by source).

    Raises ``BodyTemplateError`` naming the line of a syntax error, a tag that is not allowed,
    or a variable that is not part of the data. Every node that writes output is counted
    against the body's size budget as it renders.
    """
    if len(source) > MAX_TEMPLATE_CHARACTERS:
        raise BodyTemplateError(
            gettext_noop("The template has %(count)s characters; the limit is %(limit)s."),
            {"count": len(source), "limit": MAX_TEMPLATE_CHARACTERS},
        )
    try:
        template = _ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from exc
    bound = {"forloop", "block"}
    names: list[tuple[str, int]] = []
    _names_collect(template.nodelist, names, bound)
    for name, line in names:
        if name not in CONTEXT_NAMES and name not in bound:
            raise BodyTemplateError(
                gettext_noop("Line %(line)s: %(name)s is not available; a body can use %(names)s."),
                {"line": line, "name": repr(name), "names": ", ".join(CONTEXT_NAMES)},
            )
    _budget_leaves(template.nodelist)
    return CompiledBody(source=source, template=template)


def _budget_leaves(nodelist: NodeList) -> None:
    """Wrap, in place, every node that writes output itself (text, variables, ``firstof``,
    ``cycle``, ``now``, ...) so its output is counted; containers are walked, not wrapped."""
    for index, node in enumerate(nodelist):
        children = [value for value in vars(node).values() if isinstance(value, NodeList)] + [
            nested
            for value in vars(node).values()
            if isinstance(value, list)
            for item in value
            if isinstance(item, tuple)
            for nested in item
            if isinstance(nested, NodeList)
        ]
        if children:
            for child in children:
                _budget_leaves(child)
        else:
            nodelist[index] = BudgetedNode(node)


# The syntax errors a body template most often has, in Django's words (its parser's messages
# are not translated) and then in sentences of ours that are: (Django's message, ours, how the
# parameters are made from the match). Any other syntax error keeps Django's words.
_SYNTAX_ERRORS: tuple[
    tuple[re.Pattern[str], str, Callable[[re.Match[str]], dict[str, str]]], ...
] = (
    (
        re.compile(
            r"Unclosed tag on line \d+: '(?P<tag>[^']+)'\. Looking for one of: (?P<ends>.+)\."
        ),
        gettext_noop(
            "Line %(line)s: the tag {%% %(tag)s %%} is not closed; end it with {%% %(end)s %%}."
        ),
        lambda match: {"tag": match["tag"], "end": match["ends"].split(", ")[-1]},
    ),
    (
        re.compile(
            r"Invalid block tag on line \d+: '(?P<tag>end\w*|else|elif|empty)', "
            r"expected (?P<expected>.+)\. "
        ),
        gettext_noop(
            "Line %(line)s: {%% %(tag)s %%} is out of place; the open tag ends with "
            "{%% %(end)s %%}."
        ),
        lambda match: {"tag": match["tag"], "end": re.findall(r"'([^']+)'", match["expected"])[-1]},
    ),
    (
        re.compile(r"Invalid block tag on line \d+: '(?P<tag>end\w*|else|elif|empty)'\. "),
        gettext_noop("Line %(line)s: {%% %(tag)s %%} is out of place: no open tag ends with it."),
        lambda match: {"tag": match["tag"]},
    ),
    (
        re.compile(r"Empty variable tag on line \d+"),
        gettext_noop("Line %(line)s: {{ }} is empty; write a value in it, such as {{ data }}."),
        lambda match: {},
    ),
    (
        re.compile(r"Empty block tag on line \d+"),
        gettext_noop("Line %(line)s: {%% %%} is empty; write a tag in it or remove it."),
        lambda match: {},
    ),
    (
        re.compile(r"Variables and attributes may not begin with underscores: (?P<name>'.*')"),
        gettext_noop(
            "Line %(line)s: %(name)s cannot be used: a name in a body cannot begin with an "
            "underscore."
        ),
        lambda match: {"name": match["name"]},
    ),
    (
        re.compile(r"(?P<name>\w+) requires 1 arguments, 2 provided"),
        gettext_noop(
            "Line %(line)s: the filter %(name)s takes no argument; remove the colon and what "
            "follows it."
        ),
        lambda match: {"name": repr(match["name"])},
    ),
    (
        re.compile(r"(?P<name>\w+) requires 2 arguments, 1 provided"),
        gettext_noop(
            "Line %(line)s: the filter %(name)s needs an argument after a colon, as in %(example)s."
        ),
        lambda match: {"name": repr(match["name"]), "example": f'{match["name"]}:"..."'},
    ),
    (
        re.compile(r"Could not parse the remainder: (?P<remainder>'.*') from (?P<expression>'.*')"),
        gettext_noop(
            "Line %(line)s: %(remainder)s cannot be read in %(expression)s; check the "
            "spelling and the quotes."
        ),
        lambda match: {"remainder": match["remainder"], "expression": match["expression"]},
    ),
    (
        re.compile(
            r"'for' statements should (have at least four words|use the format 'for x in y')"
        ),
        gettext_noop("Line %(line)s: write the loop as {%% for course in data.courses %%}."),
        lambda match: {},
    ),
    (
        re.compile(
            r"(Unexpected end of expression in if tag|Unused '.*' at end of if expression"
            r"|Not expecting '.*' in this position in if tag)"
        ),
        gettext_noop(
            "Line %(line)s: the condition of {%% if %%} cannot be read; write it as "
            '{%% if data.course.id == "c-42" %%}.'
        ),
        lambda match: {},
    ),
)


def _syntax_error(exc: TemplateSyntaxError) -> BodyTemplateError:
    info = getattr(exc, "template_debug", None) or {}
    line = info.get("line")
    message = str(exc)
    if line:
        for pattern, text, make_params in _SYNTAX_ERRORS:
            match = pattern.match(message)
            if match:
                return BodyTemplateError(text, {"line": line, **make_params(match)})
    invalid = re.match(r"Invalid block tag on line \d+: '([^']+)'", message)
    if invalid:
        params = {"line": line, "tag": invalid.group(1), "tags": ", ".join(ALLOWED_TAGS)}
        if line:
            return BodyTemplateError(
                gettext_noop(
                    "Line %(line)s: the tag {%% %(tag)s %%} cannot be used in a webhook body; "
                    "the tags are %(tags)s."
                ),
                params,
            )
        return BodyTemplateError(
            gettext_noop(
                "The tag {%% %(tag)s %%} cannot be used in a webhook body; the tags are %(tags)s."
            ),
            params,
        )
    invalid_filter = re.match(r"Invalid filter: '([^']+)'", message)
    if invalid_filter:
        params = {"line": line, "name": repr(invalid_filter.group(1))}
        if line:
            return BodyTemplateError(
                gettext_noop("Line %(line)s: there is no filter named %(name)s."), params
            )
        return BodyTemplateError(gettext_noop("There is no filter named %(name)s."), params)
    # Django's own words for other syntax errors (an unclosed tag, ...).
    if line:
        return BodyTemplateError(
            gettext_noop("Line %(line)s: %(message)s"), {"line": line, "message": message}
        )
    return BodyTemplateError(message)


def _names_collect(node: Any, names: list[tuple[str, int]], bound: set[str], line: int = 1) -> None:
    """Every variable a node reads (with its line) and every name it binds, recursively."""
    if isinstance(node, Node):
        token = getattr(node, "token", None)
        line = getattr(token, "lineno", line) or line
        for attribute in ("loopvars",):
            bound.update(getattr(node, attribute, None) or ())
        for attribute in ("var_name", "asvar", "variable_name"):
            value = getattr(node, attribute, None)
            if isinstance(value, str):
                bound.add(value)
        extra = getattr(node, "extra_context", None)
        if isinstance(extra, dict):
            bound.update(extra)
        for value in vars(node).values():
            _names_collect(value, names, bound, line)
    elif isinstance(node, NodeList | list | tuple):
        for item in node:
            _names_collect(item, names, bound, line)
    elif isinstance(node, dict):
        for item in node.values():
            _names_collect(item, names, bound, line)
    elif isinstance(node, FilterExpression):
        _names_collect(node.var, names, bound, line)
        for _func, arguments in node.filters:
            for _is_lookup, argument in arguments:
                _names_collect(argument, names, bound, line)
    elif isinstance(node, Variable):
        if node.literal is None and node.lookups:
            names.append((node.lookups[0], line))
    elif isinstance(node, TokenBase):
        for attribute in ("first", "second", "value"):
            _names_collect(getattr(node, attribute, None), names, bound, line)


def body_context(envelope: dict[str, Any], unix_timestamp: int) -> dict[str, Any]:
    """The data a body template sees for one envelope (plain values only)."""
    event_type = str(envelope["type"])
    resource, _, action = event_type.rpartition(".")
    return {
        "id": envelope["id"],
        "type": event_type,
        "resource": resource,
        "action": action,
        "timestamp": envelope["timestamp"],
        "unix_timestamp": unix_timestamp,
        "school": dict(envelope["school"]),
        "data": envelope["data"],
    }


def body_render(compiled: CompiledBody, context: dict[str, Any]) -> str:
    """Render a compiled body within its budget: loop iterations, output size, the size of any
    value a filter makes, the characters filters work through, and time (``library``). Every
    render goes through here, in the web process (preview, the check on save) as in the worker.

    Raises ``BodyTemplateError`` when it runs away, or fails on this data.
    """
    try:
        with render_budget():
            output = compiled.template.render(Context(context, autoescape=False))
    except (LoopBudgetExceeded, OutputBudgetExceeded, WorkBudgetExceeded) as exc:
        raise BodyTemplateError(exc.text, exc.params) from exc
    except Exception as exc:
        # A filter given data it cannot take (divisibleby on null, ...): the template cannot be
        # rendered for this event, which is this delivery's failure and nobody else's.
        raise BodyTemplateError(
            gettext_noop("The template failed on this event's data: %(error)s"), {"error": exc}
        ) from exc
    return output


JSON_INVALID = gettext_noop(
    "the body is not valid JSON: %(error)s at line %(line)s column %(column)s%(quote)s"
)
XML_INVALID = gettext_noop(
    "the body is not valid XML: %(error)s at line %(line)s column %(column)s%(quote)s"
)
JSON_TOO_DEEP = gettext_noop("the body is nested too deeply to be read as JSON")
JSON_CONSTANT = gettext_noop(
    "the body is not valid JSON: %(constant)s is not a JSON value (write a number, or null)"
)
JSON_NUMBER_TOO_LONG = gettext_noop(
    "the body has a number of %(digits)s digits, more than JSON parsers read (%(limit)s); "
    "write it as text"
)
XML_ENCODING = gettext_noop(
    'the XML declaration says encoding="%(encoding)s", but a webhook body is sent in UTF-8: '
    'write encoding="utf-8"'
)
_XML_ENCODINGS = ("utf-8", "utf8")


class _NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's parser reads them, JSON (RFC 8259) has none."""

    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def _json_constant_refuse(constant: str) -> Any:
    raise _NotJson(constant)


class _NumberTooLong(ValueError):
    """An integer past Python's digit limit (``sys.get_int_max_str_digits``): ``int()`` refuses
    it, as a Python receiver's parser would."""

    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    limit = sys.get_int_max_str_digits()  # 0: no limit
    if limit and digits > limit:
        raise _NumberTooLong(digits)
    return int(text)


def body_output_check(output: str, content_type: str) -> None:
    """Raise ``BodyTemplateError`` unless the output parses as the content type (JSON as
    RFC 8259 has it: no NaN or Infinity; XML in UTF-8, the encoding it is sent in)."""
    if content_type == "json":
        try:
            json.loads(output, parse_constant=_json_constant_refuse, parse_int=_json_int)
        except _NotJson as exc:
            raise BodyTemplateError(JSON_CONSTANT, {"constant": exc.constant}) from None
        except _NumberTooLong as exc:
            raise BodyTemplateError(
                JSON_NUMBER_TOO_LONG,
                {"digits": exc.digits, "limit": sys.get_int_max_str_digits()},
            ) from None
        except RecursionError:
            # Python's parser gives up on deep nesting; no receiver would read it either.
            raise BodyTemplateError(JSON_TOO_DEEP, {}) from None
        except json.JSONDecodeError as exc:
            raise BodyTemplateError(
                JSON_INVALID,
                {
                    "error": exc.msg,
                    "line": exc.lineno,
                    "column": exc.colno,
                    "quote": _quote_line(output, exc.lineno),
                },
            ) from exc
    elif content_type == "xml":
        parser = xml.parsers.expat.ParserCreate()
        declared: list[str] = []
        parser.XmlDeclHandler = lambda _version, encoding, _standalone: declared.append(
            encoding or ""
        )
        try:
            parser.Parse(output.encode(), True)
        except xml.parsers.expat.ExpatError as exc:
            _xml_encoding_check(declared)
            message = xml.parsers.expat.ErrorString(exc.code)
            raise BodyTemplateError(
                XML_INVALID,
                {
                    "error": message,
                    "line": exc.lineno,
                    "column": exc.offset + 1,
                    "quote": _quote_line(output, exc.lineno),
                },
            ) from exc
        _xml_encoding_check(declared)


def _xml_encoding_check(declared: list[str]) -> None:
    """Refuse an XML declaration naming another encoding than the UTF-8 the body is sent in."""
    if declared and declared[0] and declared[0].lower() not in _XML_ENCODINGS:
        raise BodyTemplateError(XML_ENCODING, {"encoding": declared[0]})


def _quote_line(output: str, lineno: int) -> str:
    lines = output.splitlines()
    if 1 <= lineno <= len(lines):
        text = lines[lineno - 1].strip()
        if len(text) > 80:
            text = text[:77] + "..."
        return f" ({text})"
    return ""
