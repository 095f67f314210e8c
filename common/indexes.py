"""Index changes that a large table takes while it is written (for migrations).

On PostgreSQL each statement runs ``CONCURRENTLY``: the table is written meanwhile (a build
scans it). A migration run inside a transaction (a test migrating back and forth) gets the
plain statements. Elsewhere the usual statements.
"""

from __future__ import annotations

from typing import Any

from django.db import models


def index_build(schema_editor: Any, model: type[models.Model], index: models.Index) -> None:
    """Build ``index``. An interrupted build leaves an invalid index behind, which the next
    run drops and builds again."""
    concurrently = _concurrently(schema_editor)
    if concurrently is None:
        schema_editor.add_index(model, index)
        return
    schema_editor.remove_index(model, index, concurrently=concurrently)  # IF EXISTS
    schema_editor.add_index(model, index, concurrently=concurrently)


def index_drop(schema_editor: Any, model: type[models.Model], index: models.Index) -> None:
    """Drop ``index``."""
    concurrently = _concurrently(schema_editor)
    if concurrently is None:
        schema_editor.remove_index(model, index)
        return
    schema_editor.remove_index(model, index, concurrently=concurrently)


def index_replace(
    schema_editor: Any, model: type[models.Model], *, build: models.Index, drop: models.Index
) -> None:
    """Build ``build``, then drop ``drop``: the table always has one of them."""
    index_build(schema_editor, model, build)
    index_drop(schema_editor, model, drop)


def _concurrently(schema_editor: Any) -> bool | None:
    """Whether to build ``CONCURRENTLY`` on PostgreSQL; None elsewhere."""
    if schema_editor.connection.vendor != "postgresql":
        return None
    return not schema_editor.connection.in_atomic_block
