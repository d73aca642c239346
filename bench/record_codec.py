"""Bytes and CPU of the instance record as the store writes and reads it.

    python bench/record_codec.py [--sagas N] [--rounds R] [--json] [--server]

Builds the records the engine writes for ``bench/core.py``'s sagas (completed,
compensated, retried: each transition's state, outbox, origin and trace), then times,
in thread CPU per record, the store's encoding (``saga.store.base.record_json`` where the
checkout has it, else the serializer ``KvInstanceStore`` called before) and the decoding
of those bytes (``InstanceRecord.model_validate_json``, what every reader does). Prints
the mean bytes per record and the median (range) µs of ``--rounds`` rounds. No server:
compare checkouts by running it with each on ``PYTHONPATH``, alternating.

``--server``: also writes those records, as the engine does (a create, then revision-checked
updates, 64 sagas' writes in flight) through ``KvInstanceStore`` to a bucket of a
nats-server of its own, in rounds that alternate the store's encoding and the full one
(``to_json(record)``, what the store wrote before) in the same processes, and prints the
server's CPU and this process's per write (medians of ``--rounds``).
"""

from __future__ import annotations

import argparse
import asyncio
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
from saga.nats.server import EmbeddedServer
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
    return [r for saga in sagas_records(sagas) for r in saga]


def sagas_records(sagas: int) -> list[list[InstanceRecord]]:
    """Per saga (``sagas`` of each scenario), the records the engine writes, in order."""
    definition = load_definition(DEFINITION)
    found: list[list[InstanceRecord]] = []
    for i in range(sagas):
        for name, make in SCENARIOS.items():
            found.append([])
            state: InstanceState | None = None
            for n, (now, event) in enumerate(make(f"{name}-{i}")):
                decision = announced(
                    decide_slotted(definition, state, event, now), definition.status_events
                )
                if not decision.changed or decision.state is None:
                    continue
                state = decision.state
                found[-1].append(
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


async def _written(sagas: int, rounds: int) -> dict[str, Any]:
    """Server and client CPU per write, the store's encoding against the full one."""
    import nats

    from bench.procs import cpu_seconds
    from saga.nats.provision import StreamSettings, ensure_bucket
    from saga.store import kv as kv_module

    ours = kv_module.record_json if hasattr(kv_module, "record_json") else None
    full = InstanceRecord.__pydantic_serializer__.to_json
    found = sagas_records(sagas)
    writes = sum(len(s) for s in found)
    cpu: dict[str, dict[str, list[float]]] = {
        k: {"server": [], "client": []} for k in ("store", "full")
    }
    with EmbeddedServer() as server:
        assert server.process is not None
        nc = await nats.connect(server.url)
        bucket = await ensure_bucket(nc.jetstream(), "records", StreamSettings())
        store = kv_module.KvInstanceStore(nc, "records", bucket)
        for n in range(rounds):
            for kind in ("store", "full"):
                if ours is not None:
                    kv_module.record_json = ours if kind == "store" else full  # type: ignore[attr-defined]
                server_start, start = cpu_seconds(server.process.pid), time.process_time()
                for first in range(0, len(found), 64):
                    batch = found[first : first + 64]
                    revisions: list[int | None] = [None] * len(batch)
                    for t in range(max(len(s) for s in batch)):
                        todo = [i for i, s in enumerate(batch) if t < len(s)]
                        done = await store.write_all(
                            [(f"{kind}.{n}.{first + i}", batch[i][t], revisions[i]) for i in todo]
                        )
                        for i, revision in zip(todo, done, strict=True):
                            assert isinstance(revision, int), revision
                            revisions[i] = revision
                cpu[kind]["client"].append((time.process_time() - start) / writes * 1e6)
                cpu[kind]["server"].append(
                    (cpu_seconds(server.process.pid) - server_start) / writes * 1e6
                )
        await nc.close()
    return {
        "writes_per_round": writes,
        **{f"{kind}_{who}_us": _summary(v) for kind, c in cpu.items() for who, v in c.items()},
    }


def _summary(values: list[float]) -> list[float]:
    return [round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=300, help="sagas of each scenario")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--server", action="store_true", help="also write them to a server")
    args = parser.parse_args()
    result = measure(args.sagas, args.rounds)
    if args.server:
        result |= asyncio.run(_written(args.sagas, args.rounds))
    if args.json:
        print(json.dumps(result, allow_nan=False))
        return
    print(f"{result['records']} records, {result['bytes']} bytes each on average")
    for what in ("encode_us", "decode_us"):
        median, low, high = result[what]
        print(f"{what[:-3]:7} {median:6.2f} µs per record ({low:.2f}-{high:.2f})")
    for what, value in result.items():
        if what.endswith("_us") and what not in ("encode_us", "decode_us"):
            median, low, high = value
            print(f"{what[:-3]:13} {median:6.2f} µs per write ({low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
