"""The garbage collector of a long-running saga process, tuned once it has started.

A busy engine allocates a few hundred short-lived objects per message (decisions, records,
futures), nearly all freed by reference counting; reference cycles are rare. With CPython's
default thresholds the collector still runs a young collection every 700 allocations and
keeps re-scanning everything loaded at start-up (modules, pydantic's schemas, the
definitions), which cost the engine about a tenth of its CPU per saga
(docs/performance.md, "Issue 15, round 4"). After start-up the loaded objects are frozen
out of the collector's view and young collections are made rarer; cycles are still
collected, later: CPython counts allocations net of frees, so garbage that only the
collector can free counts towards the next collection itself (round 7).
"""

from __future__ import annotations

import gc
import os

from saga.errors import ConfigError

THRESHOLD_ENV = "SAGA_GC_THRESHOLD"
"""Allocations between young collections once started; ``0``: Python's collector untouched."""
YOUNG_THRESHOLD = 20_000
"""Allocations between young collections (CPython's default: 700)."""
OLDER_THRESHOLDS = (20, 20)
"""Young collections between middle ones, and middle ones between full ones (default 10, 10)."""


def threshold_from_env(value: str | None) -> int:
    """``$SAGA_GC_THRESHOLD`` as the ``--gc-threshold`` option reads it (unset: the default)."""
    if value is None or not value.strip():
        return YOUNG_THRESHOLD
    try:
        threshold = int(value)
    except ValueError:
        threshold = -1
    if threshold < 0:
        raise ConfigError(f"{THRESHOLD_ENV}={value!r}: expected a whole number >= 0")
    return threshold


def settle_after_start(threshold: int | None = None) -> None:
    """Collect what start-up left, freeze the rest out of future collections, and collect
    less often: a young collection every ``threshold`` allocations (None: from
    ``$SAGA_GC_THRESHOLD``, else :data:`YOUNG_THRESHOLD`; 0: leave the collector as
    Python set it). See the module's docstring."""
    if threshold is None:
        threshold = threshold_from_env(os.environ.get(THRESHOLD_ENV))
    if threshold == 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *OLDER_THRESHOLDS)
