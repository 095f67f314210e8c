from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _quiet_workers(quiet_workers_before_flush: None) -> None:
    """See ``quiet_workers_before_flush`` in tests/conftest.py."""
