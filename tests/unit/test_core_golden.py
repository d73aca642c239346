"""The core's output is byte for byte what it was: records and commands against a golden file.

``tests/unit/data/core_golden.json`` holds, for the bench saga's transitions
(``bench/core.py``: completed, compensated, retried) and for seeded random walks over
definitions that use every feature of the DSL (parallel steps, conditions, observed and
early replies, waits, queue timeouts, ``max_in_flight``, child sagas, schemas, retries,
fire-and-forget undos, operator actions, the timer slot), the first 16 hex digits of the
SHA-256 of each transition's encoded outcome: the record as the store writes it, the
outbox's commands, ``changed``, ``note`` and ``error``. A speed-up of the core that changes one byte fails here.

The file was written by the core of main at 3207bdc (before the round-4 speed-ups); write it
again only for a change meant to alter the output:
``PYTHONPATH=$PWD python tests/unit/test_core_golden.py --write``.

The store writes each record in its own, smaller encoding (``saga.store.base.record_json``):
``tests/unit/data/record_golden.json`` holds the hashes of those bytes for the same walks
(written by ``--write-store``, first at the branch p6-record), and each must load to the
record the core's encoding loads to.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.core import SCENARIOS
from bench.core import run as bench_run
from saga import jsonwire
from saga.core.announce import announced
from saga.core.commands import command_to_json
from saga.core.decide import Decision
from saga.core.events import (
    CommandAdmitted,
    CompensationFailed,
    CompensationSucceeded,
    Event,
    OperatorAbort,
    OperatorRedrive,
    OperatorResume,
    OperatorRetry,
    OperatorTerminate,
    SagaTriggered,
    Signal,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    UndoRequested,
)
from saga.core.state import InstanceState, ParentLink, Status
from saga.core.wakeup import decide_slotted
from saga.definition.loader import load_definition
from saga.definition.model import SagaDefinition
from saga.store.base import InstanceRecord, record_json

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "data" / "core_golden.json"
STORE_GOLDEN = GOLDEN.with_name("record_golden.json")
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
WALKS = 12
"""Seeded walks per definition."""
LENGTH = 40
"""Events per walk."""

_SCHEMA = {
    "type": "object",
    "properties": {"v": {"type": "integer", "minimum": 0}},
    "required": ["v"],
}


def _undo(event: str, **more: Any) -> dict[str, Any]:
    return {"publish": {"event": event, "data": {"v": "steps.a.v", "id": "saga.id"}}, **more}


FEATURES: dict[str, Any] = {
    "name": "golden-features",
    "version": 3,
    "trigger": {"event": "g.go", "keep": ["v", "w", "items", "skip"]},
    "deadline": "2m",
    "steps": [
        {
            "name": "a",
            "publish": {
                "event": "g.a",
                "data": {"v": "trigger.v", "n": "`1`", "i": "trigger.items"},
            },
            "success": "g.a.ok",
            "failure": "g.a.no",
            "keep": ["v"],
            "schema": _SCHEMA,
            "timeout": "5s",
            "retry": {"attempts": 3, "backoff": "100ms", "on_failure": True},
            "compensate": _undo(
                "g.a.undo",
                success="g.a.undone",
                failure="g.a.undo-failed",
                timeout="5s",
                retry={"attempts": 2, "backoff": "1s", "on_failure": True},
            ),
        },
        {
            "name": "observed",
            "after": ["a"],
            "success": "g.o.ok",
            "failure": "g.o.no",
            "timeout": "30s",
            "compensate": _undo("g.o.undo"),
        },
        {
            "name": "gated",
            "after": ["a"],
            "when": "trigger.skip != `true`",
            "publish": {"event": "g.gated", "data": "trigger"},
            "success": "g.gated.ok",
            "failure": "g.gated.no",
            "queue_timeout": "2s",
            "timeout": "5s",
            "max_in_flight": 2,
            "retry": {"attempts": 2, "backoff": "1s"},
            "compensate": _undo("g.gated.undo", success="g.gated.undone", timeout="5s"),
        },
        {"name": "pause", "after": ["observed", "gated"], "wait": "10s"},
        {"name": "child", "saga": "golden-child", "data": {"v": "steps.a.v"}},
        {
            "name": "last",
            "publish": {"event": "g.last"},
            "success": "g.last.ok",
            "failure": "g.last.no",
        },
    ],
}
"""Every feature the core decides on, in one definition."""


def definitions() -> dict[str, SagaDefinition]:
    found = {
        "bench-order": load_definition(ROOT / "bench/definitions/bench-order.yaml"),
        "bench-observed": load_definition(ROOT / "bench/definitions/bench-observed.yaml"),
        "order-fulfilment": load_definition(ROOT / "definitions/order-fulfilment.yaml"),
        "travel-booking": load_definition(ROOT / "definitions/travel-booking.yaml"),
        "features": SagaDefinition.model_validate(FEATURES),
    }
    abandon = {**FEATURES, "name": "golden-abandon", "branch_failure": "abandon"}
    found["features-abandon"] = SagaDefinition.model_validate(abandon)
    return found


def _encoded(decision: Decision) -> str:
    record = None
    if decision.state is not None:
        record = InstanceRecord.__pydantic_serializer__.to_json(
            InstanceRecord(state=decision.state)
        ).decode()
    commands = jsonwire.dumps([command_to_json(c) for c in decision.commands]).decode()
    return json.dumps(
        [decision.changed, decision.note, decision.error, record, commands], sort_keys=True
    )


FINISHED = (Status.COMPLETED, Status.COMPENSATED, Status.TERMINATED)


def _trigger(rng: random.Random, child: bool) -> SagaTriggered:
    data = {"v": rng.randint(0, 3), "w": "x", "items": [{"sku": "a", "qty": [1, 2]}]}
    data["skip"] = rng.random() < 0.3
    parent = ParentLink(saga="p", saga_id="p-1", step="s", attempt=2) if child else None
    return SagaTriggered(f"g-{rng.randint(1, 999)}", data, parent)


def _event(definition: SagaDefinition, state: InstanceState, rng: random.Random) -> Event:
    """A random event for ``state``: mostly answers to what is in flight, some of anything."""
    active = [n for n, s in state.steps.items() if s.status in ("active", "retry-wait")]
    step = (
        rng.choice(active) if active and rng.random() < 0.7 else rng.choice(definition.steps).name
    )
    undoing = state.compensation_queue[0] if state.compensation_queue else None
    undo = undoing if undoing and rng.random() < 0.7 else step
    current = state.steps[step].attempt if step in state.steps else 1
    attempt = rng.choice((None, current, current, current, current - 1, current + 1))
    data = {"v": rng.choice((0, 1, 2, 2, 2, -1)), "w": rng.choice(("a", "b")), "id": step}
    roll = rng.random()
    if roll < 0.35:
        return StepSucceeded(step, data, attempt)
    if roll < 0.42:
        return StepFailed(step, rng.choice(("no", "declined")), data, attempt)
    if roll < 0.48:
        return StepStarted(step, attempt)
    if roll < 0.54:
        return CommandAdmitted(step, attempt or 1, f"slot-{rng.randint(0, 9)}", {"x": 1})
    if roll < 0.64:
        return CompensationSucceeded(undo, data)
    if roll < 0.68:
        return CompensationFailed(undo, "undo-no", rng.choice((None, 1, 2)))
    if roll < 0.86:
        return TimerFired(Timer(TimerKind.WAKE))
    if roll < 0.88:
        return TimerFired(Timer(rng.choice(list(TimerKind)), step, attempt or 1))
    if roll < 0.93:
        kinds = (OperatorAbort, OperatorRetry, OperatorResume, OperatorTerminate, OperatorRedrive)
        return rng.choice(kinds)(actor="golden")
    observed = [x for s in definition.steps if not s.driven for x in (*s.success, *s.failure)]
    if roll < 0.97 and observed:
        return Signal(rng.choice(observed), {"v": 1, "reason": "by hand"}, "approved", "ops")
    if roll < 0.99:
        return UndoRequested()
    return SagaTriggered(state.saga_id, {"v": 1})


def walk(definition: SagaDefinition, seed: int) -> Iterator[Decision]:
    """One seeded walk: each transition's decision."""
    rng = random.Random(f"{definition.name}:{seed}")
    now = T0
    state: InstanceState | None = None
    for _ in range(LENGTH):
        if state is not None and state.status in FINISHED and rng.random() < 0.6:
            state = None  # the next instance: a finished one only absorbs events
        if state is None:
            event: Event = _trigger(rng, child=seed % 2 == 1)
        else:
            event = _event(definition, state, rng)
        if isinstance(event, TimerFired) and state is not None and state.wake_at is not None:
            now = max(now, state.wake_at + timedelta(milliseconds=rng.choice((-1500, 0, 5))))
        else:
            now += timedelta(milliseconds=rng.choice((0, 3, 250, 4000)))
        decision = announced(
            decide_slotted(definition, state, event, now), definition.status_events
        )
        yield decision
        if decision.changed and decision.state is not None:
            state = decision.state


def outcomes() -> dict[str, list[str]]:
    bench = load_definition(ROOT / "bench/definitions/bench-order.yaml")
    found: dict[str, list[str]] = {}
    for name, make in SCENARIOS.items():
        found[f"bench:{name}"] = [
            hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:16]
            for t in bench_run(bench, make(f"o-{name}"))
        ]
    for name, definition in definitions().items():
        for seed in range(WALKS):
            found[f"walk:{name}:{seed}"] = [
                hashlib.sha256(_encoded(d).encode()).hexdigest()[:16]
                for d in walk(definition, seed)
            ]
    return found


def test_records_and_commands_are_byte_for_byte_the_golden_ones() -> None:
    golden = json.loads(GOLDEN.read_text())
    now = outcomes()
    assert now.keys() == golden.keys()
    for name, hashes in golden.items():
        differs = [i for i, (a, b) in enumerate(zip(hashes, now[name], strict=True)) if a != b]
        assert not differs, f"{name}: transition {differs[0]} encodes differently"


def stored() -> dict[str, list[str]]:
    """Per walk, the hash of each record's bytes as the store writes them."""
    found: dict[str, list[str]] = {}
    for name, definition in definitions().items():
        for seed in range(WALKS):
            found[f"walk:{name}:{seed}"] = [
                hashlib.sha256(record_json(InstanceRecord(state=d.state))).hexdigest()[:16]
                for d in walk(definition, seed)
                if d.state is not None
            ]
    return found


def test_the_store_writes_each_record_as_its_golden_bytes() -> None:
    golden = json.loads(STORE_GOLDEN.read_text())
    assert stored() == golden


def test_the_store_bytes_load_as_the_core_s_encoding_does() -> None:
    for definition in definitions().values():
        for seed in range(WALKS):
            for decision in walk(definition, seed):
                if decision.state is None:
                    continue
                record = InstanceRecord(state=decision.state, outbox=[{"v": None}])
                full = InstanceRecord.__pydantic_serializer__.to_json(record)
                loaded = InstanceRecord.model_validate_json(record_json(record))
                assert loaded == InstanceRecord.model_validate_json(full) == record


def test_the_walks_reach_every_kind_of_outcome() -> None:
    """The golden walks are worth something: they end sagas every way there is."""
    seen = {
        d.state.status.value
        for definition in definitions().values()
        for seed in range(WALKS)
        for d in walk(definition, seed)
        if d.changed and d.state is not None
    }
    assert seen == {s.value for s in Status}


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        GOLDEN.write_text(json.dumps(outcomes(), indent=0) + "\n")
    elif sys.argv[1:] == ["--write-store"]:
        STORE_GOLDEN.write_text(json.dumps(stored(), indent=0) + "\n")
    else:
        sys.exit("usage: test_core_golden.py --write | --write-store")
