"""Index changes that a large table takes while it is written (for migrations).

On PostgreSQL each statement runs ``CONCURRENTLY``: the table is written meanwhile (a build
scans it). A migration run inside a transaction (a test migrating back and forth) gets the
plain statements. Elsewhere the usual statements.

Each step looks first at what is there, so a run interrupted at any point (these migrations
are not atomic) can simply be run again: a valid index is kept, an invalid one (a
``CONCURRENTLY`` build that did not finish) is dropped and built again.
"""

from __future__ import annotations

from typing import Any

from django.db import models


def index_build(schema_editor: Any, model: type[models.Model], index: models.Index) -> None:
    """Build ``index`` unless a valid one of that name is there."""
    found = _index_valid(schema_editor, model, index.name)
    if found:
        return
    concurrently = _concurrently(schema_editor)
    if found is False:
        schema_editor.remove_index(model, index, **concurrently)
    schema_editor.add_index(model, index, **concurrently)


def index_drop(schema_editor: Any, model: type[models.Model], index: models.Index) -> None:
    """Drop ``index`` if it is there."""
    if _index_valid(schema_editor, model, index.name) is not None:
        schema_editor.remove_index(model, index, **_concurrently(schema_editor))


def index_replace(
    schema_editor: Any, model: type[models.Model], *, build: models.Index, drop: models.Index
) -> None:
    """Build ``build``, then drop ``drop``: the table always has one of them."""
    index_build(schema_editor, model, build)
    index_drop(schema_editor, model, drop)


def _index_valid(schema_editor: Any, model: type[models.Model], name: str) -> bool | None:
    """Whether the index ``name`` of ``model``'s table is valid; None if there is none."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON "
                "c.oid = i.indexrelid WHERE c.relname = %s AND i.indrelid = %s::regclass",
                [name, model._meta.db_table],
            )
            row = cursor.fetchone()
            return None if row is None else bool(row[0])
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return True if name in constraints else None


def _concurrently(schema_editor: Any) -> dict[str, bool]:
    """``CONCURRENTLY`` on PostgreSQL outside a transaction (the keyword the editor takes)."""
    if schema_editor.connection.vendor != "postgresql":
        return {}
    return {"concurrently": not schema_editor.connection.in_atomic_block}
