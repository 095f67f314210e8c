"""Work to do once the current transaction commits, and which transaction is whose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection, transaction


def after_commit(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call ``func(*args, **kwargs)`` after the current transaction commits (at once outside
    one). An exception it raises is logged, not raised: what was committed stays committed.

    Django's robust ``on_commit`` names the failing callable by its ``__qualname__``, which a
    ``functools.partial`` lacks; this wraps the call in a named function.
    """

    def call() -> None:
        func(*args, **kwargs)

    call.__qualname__ = getattr(func, "__qualname__", repr(func))
    transaction.on_commit(call, robust=True)


def transaction_committed(txid: int) -> bool:
    """Whether PostgreSQL transaction ``txid`` (its ``txid_current()``) committed: for work
    whose commit's answer was lost with the connection. Ask on a working connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_status(%s)", [txid])
        return cursor.fetchone()[0] == "committed"


def transaction_own() -> bool:
    """Whether the innermost ``atomic`` block is the transaction itself, not a savepoint in a
    caller's: a ``SET LOCAL`` made in it ends at its commit, not in the caller's statements."""
    return len(connection.atomic_blocks) == 1
