"""JSON codecs for what the engine writes and reads per saga: pydantic, orjson, msgspec.

    python bench/json_codecs.py

Times, in µs per call (best of 7 repeats), the instance record of the bench saga after
its last step (``saga_instances``' value) and the bench's trigger payload, encoded and
decoded by pydantic's serializer (what ``saga.store.kv`` uses), the standard library as
``saga.jsonwire`` used it before, ``saga.jsonwire`` now (orjson and msgspec, with the
standard library for what they would treat differently), orjson and msgspec alone. orjson and msgspec
are optional here: a codec that is not installed is left out.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import order
from saga import jsonwire
from saga.core import StepSucceeded, decide
from saga.core.events import SagaTriggered
from saga.definition import load_definitions
from saga.store import InstanceRecord

REPLIES = {
    "reserve_inventory": {"reservation_id": "res-ord-1"},
    "charge_payment": {"payment_id": "pay-ord-1", "amount": 42.5},
    "schedule_shipping": {"tracking_id": "trk-ord-1"},
}


def bench_record() -> InstanceRecord:
    """The bench saga's record after its last step, as the engine stores it."""
    definitions = load_definitions([Path(__file__).parent / "definitions"])
    definition = definitions["bench-order"]
    now = datetime(2026, 12, 3, tzinfo=UTC)
    payload = jsonwire.loads(order("ord-1", False))
    decision = decide(definition, None, SagaTriggered("ord-1", payload), now)
    for step, reply in REPLIES.items():
        now += timedelta(milliseconds=3)
        assert decision.state is not None
        decision = decide(definition, decision.state, StepSucceeded(step, reply), now)
    assert decision.state is not None
    return InstanceRecord(
        state=decision.state,
        origin="SAGA_EVENTS:1234",
        trace={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    )


def per_call_us(call: Callable[[], Any]) -> float:
    number = 2000
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def codecs() -> dict[str, dict[str, Callable[[], Any]]]:
    record = bench_record()
    stored = record.__pydantic_serializer__.to_json(record)
    payload = jsonwire.loads(order("ord-1", False))
    wire = jsonwire.dumps(payload)
    rows: dict[str, dict[str, Callable[[], Any]]] = {
        "record encode": {
            "pydantic to_json": lambda: record.__pydantic_serializer__.to_json(record),
            "jsonwire(model_dump)": lambda: jsonwire.dumps(record.model_dump(mode="json")),
        },
        "record decode": {
            "pydantic model_validate_json": lambda: InstanceRecord.model_validate_json(stored),
            "jsonwire + model_validate": lambda: InstanceRecord.model_validate(
                jsonwire.loads(stored)
            ),
        },
        "payload encode": {
            "json (jsonwire before)": lambda: json.dumps(
                payload, allow_nan=False, separators=(",", ":")
            ).encode(),
            "jsonwire.dumps": lambda: jsonwire.dumps(payload),
        },
        "payload decode": {
            "json (jsonwire before)": lambda: json.loads(
                wire, parse_constant=float, parse_float=float
            ),
            "jsonwire.loads": lambda: jsonwire.loads(wire),
        },
    }
    try:
        import orjson
    except ImportError:
        pass
    else:
        rows["record encode"]["orjson(model_dump)"] = lambda: orjson.dumps(
            record.model_dump(mode="json")
        )
        rows["record decode"]["orjson + model_validate"] = lambda: InstanceRecord.model_validate(
            orjson.loads(stored)
        )
        rows["payload encode"]["orjson.dumps"] = lambda: orjson.dumps(payload)
        rows["payload decode"]["orjson.loads"] = lambda: orjson.loads(wire)
    try:
        import msgspec
    except ImportError:
        pass
    else:
        encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
        rows["record encode"]["msgspec(model_dump)"] = lambda: encoder.encode(
            record.model_dump(mode="json")
        )
        rows["record decode"]["msgspec + model_validate"] = lambda: InstanceRecord.model_validate(
            decoder.decode(stored)
        )
        rows["payload encode"]["msgspec encode"] = lambda: encoder.encode(payload)
        rows["payload decode"]["msgspec decode"] = lambda: decoder.decode(wire)
    return rows


def main() -> None:
    record = bench_record()
    size = len(record.__pydantic_serializer__.to_json(record))
    print(f"record: {size} bytes; payload: {len(order('ord-1', False))} bytes")
    for what, row in codecs().items():
        for name, call in row.items():
            print(f"{what:15} {name:30} {per_call_us(call):7.2f} µs")


if __name__ == "__main__":
    main()
