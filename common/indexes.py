"""Index changes that a large table takes while it is written (for migrations)."""

from __future__ import annotations

from typing import Any

from django.db import models


def index_replace(
    schema_editor: Any, model: type[models.Model], *, build: models.Index, drop: models.Index
) -> None:
    """Build ``build``, then drop ``drop``.

    On PostgreSQL both ``CONCURRENTLY``: the table is written meanwhile (the build scans it). A
    migration run inside a transaction (a test migrating back and forth) gets the plain
    statements. An interrupted build leaves an invalid index behind, which the next run drops
    and builds again. Elsewhere the usual statements.
    """
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.remove_index(model, drop)
        schema_editor.add_index(model, build)
        return
    concurrently = not schema_editor.connection.in_atomic_block
    schema_editor.remove_index(model, build, concurrently=concurrently)  # IF EXISTS
    schema_editor.add_index(model, build, concurrently=concurrently)
    schema_editor.remove_index(model, drop, concurrently=concurrently)
