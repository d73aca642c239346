"""The garbage collector of a long-running saga process, tuned once it has started.

A busy engine allocates a few hundred short-lived objects per message (decisions, records,
futures), nearly all freed by reference counting; reference cycles are rare. With CPython's
default thresholds the collector still runs a young collection every 700 allocations and
keeps re-scanning everything loaded at start-up (modules, pydantic's schemas, the
definitions), which cost the engine about a tenth of its CPU per saga
(docs/performance.md, "Issue 15, round 4"). After start-up the loaded objects are frozen
out of the collector's view and young collections are made rarer; cycles are still
collected, later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations between young collections (CPython's default: 700)."""
OLDER_THRESHOLDS = (20, 20)
"""Young collections between middle ones, and middle ones between full ones (default 10, 10)."""


def settle_after_start() -> None:
    """Collect what start-up left, freeze the rest out of future collections, and collect
    less often (see the module's docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
