"""CPU of the pure core on the engine's real transitions of the bench saga.

    python bench/core.py [--sagas N] [--inflight K] [--rounds R] [--json]

Replays, as the engine does (``announced(decide_slotted(...))``, each transition on the
state the one before it returned), the transitions of ``bench/definitions/bench-order.yaml``
that ``bench/sagas.py`` drives: a completed saga (a trigger, three successes), a
compensated one (the last step fails, two undos) and a retried one (a step times out by
its slot and is sent again). Prints the thread CPU per saga in µs, the median of
``--rounds`` rounds (range in brackets). The events are built before the clock starts:
what is timed is the core alone. No server, no I/O: compare checkouts by running it with
each on ``PYTHONPATH``, alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import order_payload
from saga import jsonwire
from saga.core.announce import announced
from saga.core.commands import command_to_json
from saga.core.events import (
    CompensationSucceeded,
    Event,
    SagaTriggered,
    StepFailed,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
)
from saga.core.state import InstanceState
from saga.core.wakeup import decide_slotted
from saga.definition.loader import load_definition
from saga.definition.model import SagaDefinition
from saga.store.base import InstanceRecord

DEFINITION = Path(__file__).resolve().parent / "definitions" / "bench-order.yaml"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=3)
"""Time between two transitions of one saga (the engine's clock, here a fixed one)."""

Timed = tuple[datetime, Event]


def _paced(events: list[Event]) -> list[Timed]:
    return [(T0 + i * STEP, e) for i, e in enumerate(events)]


def completed(saga_id: str) -> list[Timed]:
    """A trigger and the three steps' successes, as the participants answer them."""
    return _paced(
        [
            SagaTriggered(saga_id, order_payload(saga_id, fail=False)),
            StepSucceeded("reserve_inventory", {"reservation_id": f"res-{saga_id}"}, 1),
            StepSucceeded("charge_payment", {"payment_id": f"pay-{saga_id}", "amount": 42.5}, 1),
            StepSucceeded("schedule_shipping", {"tracking_id": f"trk-{saga_id}"}, 1),
        ]
    )


def compensated(saga_id: str) -> list[Timed]:
    """The shipping step rejects the order: the payment is refunded, the stock released."""
    return _paced(
        [
            SagaTriggered(saga_id, order_payload(saga_id, fail=True)),
            StepSucceeded("reserve_inventory", {"reservation_id": f"res-{saga_id}"}, 1),
            StepSucceeded("charge_payment", {"payment_id": f"pay-{saga_id}", "amount": 42.5}, 1),
            StepFailed("schedule_shipping", "bench-failure", {"reason": "bench-failure"}, 1),
            CompensationSucceeded("charge_payment", {"refunded": f"pay-{saga_id}"}),
            CompensationSucceeded("reserve_inventory", {"released": f"res-{saga_id}"}),
        ]
    )


def retried(saga_id: str) -> list[Timed]:
    """The payment step gets no answer: its timeout fires by the slot, it is sent again
    after its backoff (a second slot fire), then everything succeeds."""
    wake = TimerFired(Timer(TimerKind.WAKE))
    events: list[Timed] = _paced(
        [
            SagaTriggered(saga_id, order_payload(saga_id, fail=False)),
            StepSucceeded("reserve_inventory", {"reservation_id": f"res-{saga_id}"}, 1),
        ]
    )
    timeout = events[-1][0] + timedelta(seconds=10)
    events += [(timeout, wake), (timeout + timedelta(milliseconds=200), wake)]
    later = events[-1][0]
    events += [
        (later + STEP, StepSucceeded("charge_payment", {"payment_id": f"p-{saga_id}"}, 2)),
        (later + 2 * STEP, StepSucceeded("schedule_shipping", {"tracking_id": "t"}, 1)),
    ]
    return events


SCENARIOS: dict[str, Callable[[str], list[Timed]]] = {
    "completed": completed,
    "compensated": compensated,
    "retried": retried,
}


def run(definition: SagaDefinition, events: list[Timed]) -> list[dict[str, Any]]:
    """Every transition's encoded outcome: the record as the store writes it, the commands
    as the outbox keeps them (``tests/unit/test_core_golden.py`` compares them with main's)."""
    state: InstanceState | None = None
    out: list[dict[str, Any]] = []
    for now, event in events:
        decision = announced(decide_slotted(definition, state, event, now), "all")
        record = InstanceRecord(state=decision.state) if decision.state is not None else None
        out.append(
            {
                "changed": decision.changed,
                "note": decision.note,
                "error": decision.error,
                "record": None
                if record is None
                else InstanceRecord.__pydantic_serializer__.to_json(record).decode(),
                "commands": jsonwire.dumps(
                    [command_to_json(c) for c in decision.commands]
                ).decode(),
            }
        )
        if decision.changed:
            state = decision.state
    return out


def timed(
    definition: SagaDefinition, make: Callable[[str], list[Timed]], sagas: int, inflight: int
) -> float:
    """Thread CPU per saga, µs, of ``sagas`` sagas' transitions, ``inflight`` at a time
    taking turns (as the engine interleaves them: each state is cold when its next event
    comes)."""
    level = definition.status_events
    runs = [make(f"order-{i:06d}") for i in range(sagas)]
    started = time.thread_time()
    for first in range(0, sagas, inflight):
        wave = runs[first : first + inflight]
        states: list[InstanceState | None] = [None] * len(wave)
        for turn in range(len(wave[0])):
            for i, events in enumerate(wave):
                now, event = events[turn]
                decision = announced(decide_slotted(definition, states[i], event, now), level)
                if decision.changed:
                    states[i] = decision.state
    return (time.thread_time() - started) / sagas * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=2000, help="sagas per scenario and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inflight", type=int, default=200, help="sagas taking turns")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    definition = load_definition(DEFINITION)
    for make in SCENARIOS.values():  # warm up: imports, caches, the schema compiler
        timed(definition, make, 50, args.inflight)
    figures: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    for _ in range(args.rounds):
        for name, make in SCENARIOS.items():
            figures[name].append(timed(definition, make, args.sagas, args.inflight))
    medians = {name: round(statistics.median(v), 1) for name, v in figures.items()}
    if args.json:
        print(json.dumps({"us_per_saga": medians, "rounds": figures}, allow_nan=False))
        return
    for name, values in figures.items():
        print(
            f"{name:12} {medians[name]:8.1f} µs/saga "
            f"({min(values):.1f}-{max(values):.1f}, {len(SCENARIOS[name]('x'))} transitions)"
        )


if __name__ == "__main__":
    main()
