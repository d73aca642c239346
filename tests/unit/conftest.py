"""Fixtures shared by the unit tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The collector's settings as they were, after a test that tunes them (saga.heap)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
