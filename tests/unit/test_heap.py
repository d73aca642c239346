"""The engine's collector settings after start-up (saga.heap)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from saga.errors import ConfigError
from saga.heap import (
    OLDER_THRESHOLDS,
    THRESHOLD_ENV,
    YOUNG_THRESHOLD,
    settle_after_start,
    threshold_from_env,
)


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


def test_the_threshold_is_a_setting_and_zero_leaves_the_collector_alone(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gc.get_threshold()
    settle_after_start(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    monkeypatch.setenv(THRESHOLD_ENV, "50000")
    settle_after_start()
    assert gc.get_threshold() == (50_000, *OLDER_THRESHOLDS)
    settle_after_start(30_000)  # the option wins over the variable
    assert gc.get_threshold() == (30_000, *OLDER_THRESHOLDS)


def test_the_variable_is_read_as_the_option_is() -> None:
    assert threshold_from_env(None) == threshold_from_env(" ") == YOUNG_THRESHOLD
    assert threshold_from_env("0") == 0
    assert threshold_from_env("100000") == 100_000
    for bad in ("-1", "lots", "1.5"):
        with pytest.raises(ConfigError, match=THRESHOLD_ENV):
            threshold_from_env(bad)


def test_garbage_cycles_trigger_their_own_collection(restored_gc: None) -> None:
    """No ``gc.collect()`` here: CPython counts allocations net of frees, so cyclic garbage
    (which reference counting never frees) adds up to the next young collection by itself,
    however quiet the rest of the process is: what it can hold is bounded by the threshold."""
    settle_after_start(1_000)

    class Node:
        other: object

    alive: list[weakref.ref[Node]] = []
    for _ in range(5_000):
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive.append(weakref.ref(a))
        del a, b
    left = sum(1 for ref in alive if ref() is not None)
    assert left < 1_000  # at most what the last threshold's worth of allocations made


def test_both_commands_take_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import saga.engine.process
    import saga.participant.runner
    from saga.cli import main

    found: dict[str, Any] = {}

    async def engine(*args: Any, **kwargs: Any) -> None:
        found["run"] = kwargs["gc_threshold"]

    def participant(*args: Any) -> None:
        found["participant"] = args[-1]

    monkeypatch.setattr(saga.engine.process, "run_engine", engine)
    monkeypatch.setattr(saga.participant.runner, "run_participant", participant)
    monkeypatch.setenv(THRESHOLD_ENV, "7000")
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--definitions", str(tmp_path), "--gc-threshold", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["participant", "services.inventory:app"])
    assert result.exit_code == 0, result.output
    assert found == {"run": 0, "participant": 7000}
    result = runner.invoke(main, ["participant", "x:app", "--gc-threshold", "-5"])
    assert result.exit_code == 2
