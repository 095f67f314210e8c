"""Admin lists that stay fast at millions of rows (the delivery log, the event log).

- ``EstimatedCountPaginator``: no full-table ``COUNT(*)`` per page load. An unfiltered list takes
  PostgreSQL's row estimate (``pg_class.reltuples``, kept by autovacuum/ANALYZE); a filtered one
  counts exactly up to 10,000 rows and estimates past that with the planner.
- ``DateRangeFilter``: a from/to range with presets, instead of ``date_hierarchy`` (which reads
  every distinct date of the table to draw its links).
- ``DropdownFilter``: a long choice list (event types, webhooks) as one select.

With ``show_full_result_count = False`` and ``show_facets = NEVER`` on the model admin, a page of
the list is one index scan plus cheap lookups.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.paginator import Paginator
from django.db import DataError, connections, transaction
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from webhook_engine.inputs import datetime_problem

EXACT_COUNT_LIMIT = 10_000


def table_row_estimate(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in the queryset's table; None if it has none."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [queryset.model._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] < 0:  # -1: never analyzed
        return None
    return int(row[0])


def plan_row_estimate(queryset: QuerySet[Any]) -> int | None:
    """The planner's estimate of how many rows the queryset returns (PostgreSQL); None else."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """A paginator whose count is exact up to ``EXACT_COUNT_LIMIT`` rows and estimated above.

    ``count_is_estimate`` tells the template to say "about".
    """

    count_is_estimate = False

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        queryset: QuerySet[Any] = self.object_list  # type: ignore[assignment]
        if not queryset.query.where:
            estimate = table_row_estimate(queryset)
            if estimate is not None and estimate > EXACT_COUNT_LIMIT:
                self.count_is_estimate = True
                return estimate
        capped = queryset.order_by()[: EXACT_COUNT_LIMIT + 1].count()
        if capped <= EXACT_COUNT_LIMIT:
            return capped
        self.count_is_estimate = True
        return max(capped, plan_row_estimate(queryset) or 0)


class FilterRefused(IncorrectLookupParameters):
    """A list filter refused its value and already said why (``messages.error``)."""


class CheckedListAdmin(admin.ModelAdmin):
    """A model admin whose list answers a query string it cannot apply with a message and the
    list without it (Django's ``?e=1``), never a 500.

    Django applies any lookup of a model's own fields given in the URL and only catches the
    values it cannot build a query from (``?created_at__gte=garbage``), silently. A lookup it
    builds but the database or its driver cannot run (``?name__regex=(``,
    ``?attempts__in=99999999999999999999``, ``?created_at__year=99999999999999999999``,
    ``?attempts__range=1``) failed the page. Only such a lookup (a parameter with ``__``) can
    ask what the database refuses: then the list's queries run in a savepoint, so the failure
    leaves the request's transaction usable; the plain list pays no extra query.
    """

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        lookups = any(LOOKUP_SEP in name for name in request.GET)
        try:
            with (
                transaction.atomic(using=self.model._default_manager.db)
                if lookups
                else contextlib.nullcontext()
            ):
                return super().get_changelist_instance(request)
        except FilterRefused:
            raise
        except (IncorrectLookupParameters, DataError, OverflowError, ValueError, IndexError) as exc:
            match = request.resolver_match
            if (
                match
                and match.url_name == f"{self.opts.app_label}_{self.opts.model_name}_changelist"
            ):
                # (An export goes back to the list, which says it.)
                given = [
                    f"{name}={value[:40]!r}"
                    for name, value in request.GET.items()
                    if name != ERROR_FLAG
                ]
                messages.error(
                    request,
                    _("The list cannot be shown with %(parameters)s; it is shown without them.")
                    % {"parameters": ", ".join(given[:3]) or "?"},
                )
            if isinstance(exc, IncorrectLookupParameters):
                raise
            raise IncorrectLookupParameters(exc) from exc


class DropdownFilter(admin.SimpleListFilter):
    """A SimpleListFilter drawn as one select (for long lists of choices)."""

    template = "admin/filter_dropdown.html"


class DateRangeFilter(admin.ListFilter):
    """From/to on a datetime field (``<field>_from``, ``<field>_to`` in the query string, dates
    or datetimes in the current time zone), with presets for the last hour, day, week, month.
    A value that is not a date, or a date no time zone can show (``9999-12-31``, an offset of
    +16:00), is refused with a message that says so, and the list is shown unfiltered.

    Subclass with ``field_path`` and ``title``.
    """

    field_path = "created_at"
    template = "admin/filter_date_range.html"
    presets = (
        (gettext_lazy("Last hour"), dt.timedelta(hours=1)),
        (gettext_lazy("Last 24 hours"), dt.timedelta(days=1)),
        (gettext_lazy("Last 7 days"), dt.timedelta(days=7)),
        (gettext_lazy("Last 30 days"), dt.timedelta(days=30)),
    )

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        self.parameter_from = f"{self.field_path}_from"
        self.parameter_to = f"{self.field_path}_to"
        self.raw: dict[str, str] = {}
        self.bounds: dict[str, dt.datetime] = {}
        for name in (self.parameter_from, self.parameter_to):
            if name not in params:
                continue
            value = params.pop(name)
            value = value[-1] if isinstance(value, list) else value
            if not value:
                continue
            parsed = self._parse(value)
            subject = _("The filter %(name)s=%(value)r") % {"name": name, "value": value[:40]}
            problem = None if parsed is None else datetime_problem(parsed, subject=subject)
            if parsed is not None and problem is None and name == self.parameter_to:
                problem = datetime_problem(self._until(value, parsed), subject=subject)
            if parsed is None or problem:
                if parsed is None:
                    message = _(
                        "The filter %(name)s=%(value)r is not a date; it was not applied."
                    ) % {"name": name, "value": value[:40]}
                else:
                    message = _("%(problem)s The filter was not applied.") % {"problem": problem}
                messages.error(request, message)
                raise FilterRefused(message)
            self.raw[name] = value
            self.bounds[name] = parsed
            self.used_parameters[name] = value
        self.swapped = False
        if len(self.bounds) == 2 and self.bounds[self.parameter_from] > self._upper_bound():
            # "From" after "To": surely meant the other way round; said, not silently empty.
            self.bounds[self.parameter_from], self.bounds[self.parameter_to] = (
                self.bounds[self.parameter_to],
                self.bounds[self.parameter_from],
            )
            self.raw[self.parameter_from], self.raw[self.parameter_to] = (
                self.raw[self.parameter_to],
                self.raw[self.parameter_from],
            )
            self.swapped = True
            messages.warning(
                request,
                _("“From” was after “To”: the dates were swapped to show %(from)s to %(to)s.")
                % {"from": self.raw[self.parameter_from], "to": self.raw[self.parameter_to]},
            )

    def _upper_bound(self) -> dt.datetime:
        """The exclusive end of the range: a date "to" includes that whole day."""
        return self._until(self.raw[self.parameter_to], self.bounds[self.parameter_to])

    @staticmethod
    def _parse(value: str) -> dt.datetime | None:
        try:
            parsed = parse_datetime(value)
            if parsed is None:
                day = parse_date(value)
                if day is None:
                    return None
                parsed = dt.datetime.combine(day, dt.time.min)
        except ValueError:
            return None
        if timezone.is_naive(parsed):
            try:
                parsed = timezone.make_aware(parsed)
            except (OverflowError, ValueError):
                return None
        return parsed

    @staticmethod
    def _until(raw: str, parsed: dt.datetime) -> dt.datetime:
        """The exclusive upper bound of a "to" value: a date "to" includes that whole day."""
        if "T" in raw or " " in raw:
            return parsed
        try:
            return parsed + dt.timedelta(days=1)
        except OverflowError:
            return dt.datetime.max.replace(tzinfo=dt.UTC)

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [f"{self.field_path}_from", f"{self.field_path}_to"]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.parameter_from in self.bounds:
            queryset = queryset.filter(
                **{f"{self.field_path}__gte": self.bounds[self.parameter_from]}
            )
        if self.parameter_to in self.bounds:
            queryset = queryset.filter(**{f"{self.field_path}__lt": self._upper_bound()})
        return queryset

    def choices(self, changelist: Any) -> Iterator[Mapping[str, object]]:
        now = timezone.localtime()
        names = [self.parameter_from, self.parameter_to]
        choices = [
            {
                "selected": not self.bounds,
                "query_string": changelist.get_query_string(remove=names),
                "display": _("Any time"),
            }
        ]
        for label, delta in self.presets:
            since = (now - delta).strftime("%Y-%m-%dT%H:%M")
            choices.append(
                {
                    "selected": self.raw.get(self.parameter_from) == since
                    and self.parameter_to not in self.raw,
                    "query_string": changelist.get_query_string(
                        {self.parameter_from: since}, [self.parameter_to]
                    ),
                    "display": label,
                }
            )
        # The form keeps every other filter of the page.
        self.hidden = [
            (name, value)
            for name, value in changelist.params.items()
            if name not in names and name != PAGE_VAR
        ]
        return iter(choices)

    @property
    def value_from(self) -> str:
        return self.raw.get(self.parameter_from, "")

    @property
    def value_to(self) -> str:
        return self.raw.get(self.parameter_to, "")
