"""The engine's collector settings after start-up (saga.heap)."""

from __future__ import annotations

import gc

from saga.heap import OLDER_THRESHOLDS, YOUNG_THRESHOLD, settle_after_start


def test_start_up_objects_are_frozen_and_young_collections_rarer(restored_gc: None) -> None:
    loaded = [{"step": "reserve"}]  # stands for what start-up loaded (a tracked object)
    assert any(o is loaded for o in gc.get_objects())
    settle_after_start()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    assert all(o is not loaded for o in gc.get_objects())  # no collection scans it again


def test_cycles_made_after_start_up_are_still_collected(restored_gc: None) -> None:
    settle_after_start()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    ident = id(a)
    del a, b
    gc.collect()
    assert all(id(o) != ident for o in gc.get_objects())
