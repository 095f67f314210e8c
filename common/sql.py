"""Fixed statements for the hottest simple writes, and constants written into statements.

Building an ORM update costs more CPU than PostgreSQL takes to run it (an
``objects.filter(pk__in=...).update(...)`` about 350 µs, the same text sent as is about
130 µs). The hot paths of fan-out and claiming make such updates on every batch; this module
sends them as fixed text on PostgreSQL and keeps the ORM elsewhere (SQLite, the embedded
default).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.db.models.expressions import Expression


def columns_of(model: type[models.Model], attnames: Iterable[str]) -> list[str]:
    """The database columns of ``model``'s concrete fields named ``attnames``, in that order
    (for fixed statements built once from the model)."""
    by_attname = {field.attname: str(field.column) for field in model._meta.concrete_fields}
    return [by_attname[name] for name in attnames]


def fields_in_order(
    model: type[models.Model], attnames: Iterable[str] | None = None
) -> list[models.Field[Any, Any]]:
    """``model``'s concrete fields named ``attnames`` (all of them for None), in the model's
    order: the columns a fixed statement reads for ``models_from_rows``. Raises ``KeyError``
    for a name that is no concrete field's attribute, as ``columns_of`` does."""
    if attnames is None:
        return list(model._meta.concrete_fields)
    named = set(attnames)
    fields = [field for field in model._meta.concrete_fields if field.attname in named]
    unknown = named - {field.attname for field in fields}
    if unknown:
        raise KeyError(f"{model.__name__} has no concrete field {sorted(unknown)!r}")
    return fields


def models_from_rows(
    model: type[models.Model],
    fields: list[models.Field[Any, Any]],
    rows: Iterable[tuple[Any, ...]] | Iterable[list[Any]],
) -> list[Any]:
    """Instances of ``model`` from rows of a fixed statement whose first columns are
    ``fields`` (``fields_in_order``; the others are loaded if ever touched), each value
    converted as the ORM converts what it reads (a JSON column's text, say).

    What a raw query set does, without its work on every query to match the columns to the
    fields (about 150 µs of CPU a query, more than reading a few rows takes). For PostgreSQL's
    fixed statements: its converters are the fields' own, kept once per process (another
    backend's may be bound to the connection of the thread that first asked).
    """
    names = [field.attname for field in fields]
    converters = _converters(model, tuple(names), connection.vendor)
    width = len(fields)
    instances = []
    for row in rows:
        values = list(row[:width])
        for index, convert in converters:
            values[index] = convert(values[index])
        instances.append(model.from_db(connection.alias, names, values))
    return instances


@functools.cache
def _converters(
    model: type[models.Model], attnames: tuple[str, ...], vendor: str
) -> list[tuple[int, Callable[[Any], Any]]]:
    """The ORM's converters of each of those columns that has some (by their position), for
    the database ``vendor``'s connections."""
    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    found: list[tuple[int, Callable[[Any], Any]]] = []
    for index, attname in enumerate(attnames):
        column = by_attname[attname].get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            found.append((index, functools.partial(_converted, converters, column)))
    return found


def _converted(converters: list[Any], column: Expression, value: Any) -> Any:
    for convert in converters:
        value = convert(value, column, connection)
    return value


def rows_update(model: type[models.Model], pks: Iterable[Any], **values: Any) -> None:
    """``UPDATE`` the rows of ``model`` whose primary key is in ``pks``, setting ``values``
    (field name: value), each value prepared by its field as the ORM prepares it."""
    pks = list(pks)
    if not pks:
        return
    if connection.vendor != "postgresql":
        model._default_manager.filter(pk__in=pks).update(**values)
        return
    rows_update_along(model, pks, **values).send()


@dataclass
class WriteAlong:
    """A data-modifying statement for PostgreSQL that may be sent as a ``WITH`` query of
    another statement of the same transaction (``with_along``), saving its own round trip.
    Whoever sends it so sets ``done`` once that statement has run; whoever made it sends it
    alone otherwise (``send``). PostgreSQL runs such a query to completion whether or not the
    statement reads it."""

    sql: str
    params: list[Any]
    done: bool = False

    def send(self) -> None:
        """Send it alone, unless it went along with another statement."""
        if not self.done:
            with connection.cursor() as cursor:
                cursor.execute(self.sql, self.params)
            self.done = True


def with_along(along: WriteAlong | None, sql: str, params: list[Any]) -> tuple[str, list[Any]]:
    """``sql`` with ``params``, and ``along`` (if any) as its first ``WITH`` query: the
    statement and parameters for the caller to send (and then to set ``along.done``). ``sql``
    may have ``WITH`` queries of its own, not ``WITH RECURSIVE``."""
    if along is None:
        return sql, params
    head = f"WITH along AS ({along.sql})"
    stripped = sql.lstrip()
    if stripped[:5].upper() == "WITH ":
        if stripped[5:].lstrip()[:9].upper() == "RECURSIVE":
            raise ValueError("A write cannot go along with a WITH RECURSIVE statement")
        return f"{head}, {stripped[5:]}", [*along.params, *params]
    return f"{head} {stripped}", [*along.params, *params]


def rows_update_along(model: type[models.Model], pks: Iterable[Any], **values: Any) -> WriteAlong:
    """``rows_update`` on PostgreSQL as a statement to send along with another
    (``WriteAlong``)."""
    meta = model._meta
    by_name = {field.name: field for field in meta.concrete_fields}
    fields = [by_name[name] for name in values]
    pk = next(field for field in meta.concrete_fields if field.primary_key)
    assignments = ", ".join(f"{field.column} = %s" for field in fields)
    params: list[Any] = [
        field.get_db_prep_save(value, connection)
        for field, value in zip(fields, values.values(), strict=True)
    ]
    params.append([pk.get_db_prep_value(value, connection) for value in pks])
    sql = f"UPDATE {meta.db_table} SET {assignments} WHERE {pk.column} = ANY(%s)"  # noqa: S608
    return WriteAlong(sql, params)


def rows_update_each(
    model: type[models.Model], objs: Iterable[models.Model], fields: Iterable[str]
) -> None:
    """``UPDATE`` each of ``objs`` (saved instances of ``model``) with its own values of
    ``fields``, in one statement: ``bulk_update`` without its cost. Django's builds a ``CASE``
    per field with a ``WHEN`` per row, about 0.5 ms of CPU per row for five fields; here the
    values go as one array per field (``unnest``) and the statement's text is the same
    whatever the rows, so a session that prepares it plans it once."""
    objs = list(objs)
    fields = list(fields)
    if not objs or not fields:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, fields)
        return
    meta = model._meta
    by_name = {field.name: field for field in meta.concrete_fields}
    pk = next(field for field in meta.concrete_fields if field.primary_key)
    columns = [pk, *(by_name[name] for name in fields)]
    quoted = [connection.ops.quote_name(str(field.column)) for field in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in quoted[1:])
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in columns)
    params = [[pk.get_db_prep_value(obj.pk, connection) for obj in objs]]
    params += [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objs]
        for field in columns[1:]
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(meta.db_table)} AS t SET {assignments} "  # noqa: S608 - names only
            f"FROM unnest({arrays}) AS v({', '.join(quoted)}) "
            f"WHERE t.{quoted[0]} = v.{quoted[0]}",
            params,
        )


@contextlib.contextmanager
def plans_in_index_order() -> Iterator[None]:
    """Inside the block, in a transaction of its own (a savepoint inside a caller's),
    PostgreSQL reads by walking indexes in order, whatever its statistics say: no bitmap
    scans, no sorts.

    For reads that must take the few rows they need from a long backlog: with statistics
    older than the backlog (a receiver dead since the last ``ANALYZE``), PostgreSQL estimates a
    few rows, reads all of them through a bitmap and sorts them, as many rows as the backlog
    holds. The settings end with the block, inside a caller's transaction too.
    """
    with transaction.atomic():
        if connection.vendor != "postgresql":
            yield
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; "
                "SET LOCAL enable_incremental_sort = off"
            )
        yield  # an error rolls the block back, the settings with it
        with connection.cursor() as cursor:
            cursor.execute(
                "RESET enable_bitmapscan; RESET enable_sort; RESET enable_incremental_sort"
            )


class Written(Expression):
    """A text constant of the code written into the statement, not sent as a parameter.

    For a condition a partial index is made on (``status = 'pending'``): a worker's session
    prepares the statements it runs over and over, and PostgreSQL may keep one plan for any
    value of a parameter (a generic plan), which cannot use such an index and reads every row
    of that status instead. Only for the code's own constants, never for input.
    """

    def __init__(self, value: str) -> None:
        super().__init__(output_field=models.CharField())
        self.value = str(value)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[str | int, ...]]:
        return "'" + self.value.replace("'", "''") + "'", ()
