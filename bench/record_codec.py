"""Bytes and CPU of the instance record as the store writes and reads it.

    python bench/record_codec.py [--sagas N] [--rounds R] [--json]

Builds the records the engine writes for ``bench/core.py``'s sagas (completed,
compensated, retried: each transition's state, outbox, origin and trace), then times,
in thread CPU per record, the store's encoding (``saga.store.base.record_json`` where the
checkout has it, else the serializer ``KvInstanceStore`` called before) and the decoding
of those bytes (``InstanceRecord.model_validate_json``, what every reader does). Prints
the mean bytes per record and the median (range) µs of ``--rounds`` rounds. No server:
compare checkouts by running it with each on ``PYTHONPATH``, alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import DEFINITION, SCENARIOS
from saga.core.announce import announced
from saga.core.commands import command_to_json
from saga.core.state import InstanceState
from saga.core.wakeup import decide_slotted
from saga.definition.loader import load_definition
from saga.store.base import InstanceRecord

TRACE = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}


def _encoder() -> Callable[[InstanceRecord], bytes]:
    try:
        from saga.store.base import record_json
    except ImportError:  # a checkout from before it
        return InstanceRecord.__pydantic_serializer__.to_json
    found: Callable[[InstanceRecord], bytes] = record_json
    return found


def records(sagas: int) -> list[InstanceRecord]:
    """Every record the engine writes for ``sagas`` sagas of each scenario."""
    definition = load_definition(DEFINITION)
    found: list[InstanceRecord] = []
    for i in range(sagas):
        for name, make in SCENARIOS.items():
            state: InstanceState | None = None
            for n, (now, event) in enumerate(make(f"{name}-{i}")):
                decision = announced(
                    decide_slotted(definition, state, event, now), definition.status_events
                )
                if not decision.changed or decision.state is None:
                    continue
                state = decision.state
                found.append(
                    InstanceRecord(
                        state=state,
                        outbox=[command_to_json(c) for c in decision.commands],
                        origin=f"SAGA_EVENTS:{i * 100 + n}",
                        trace=TRACE,
                    )
                )
    return found


def _per_record_us(call: Callable[[Any], object], items: list[Any]) -> float:
    start = time.thread_time_ns()
    for item in items:
        call(item)
    return (time.thread_time_ns() - start) / len(items) / 1000


def measure(sagas: int, rounds: int) -> dict[str, Any]:
    encode = _encoder()
    found = records(sagas)
    data = [encode(r) for r in found]
    decode = InstanceRecord.model_validate_json
    encodes, decodes = [], []
    for _ in range(rounds):
        encodes.append(_per_record_us(encode, found))
        decodes.append(_per_record_us(decode, data))
    return {
        "records": len(found),
        "bytes": round(statistics.mean(len(d) for d in data), 1),
        "encode_us": _summary(encodes),
        "decode_us": _summary(decodes),
    }


def _summary(values: list[float]) -> list[float]:
    return [round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=300, help="sagas of each scenario")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.sagas, args.rounds)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['records']} records, {result['bytes']} bytes each on average")
    for what in ("encode_us", "decode_us"):
        median, low, high = result[what]
        print(f"{what[:-3]:7} {median:6.2f} µs per record ({low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
