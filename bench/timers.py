"""How late step timeouts fire under a burst: ``python bench/timers.py [--sagas 2000]``.

One engine in this process on an embedded nats-server. A burst of triggers (by default
2,000, published as fast as one client can, about 0.1-0.4 s) starts sagas whose only
step nobody answers, so every one of them times out. For each instance the lateness is
when the engine recorded ``step.timed-out`` minus when the step started plus its
timeout (both on the engine's clock, from the instance history): server tick, fetch,
queueing behind other work and the transition itself. Prints p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import nats

from saga.client import instance_store
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology

TIMEOUT = 3.0
SAGA = parse_definition(
    f"""
name: burst
trigger: {{event: burst.started, id: {{field: id}}}}
steps:
  - name: create_account
    publish: {{event: burst.account.create}}
    success: burst.account.created
    timeout: {TIMEOUT}s
    compensate: {{publish: {{event: burst.account.delete}}}}
"""
)


async def measure(sagas: int, settings: EngineSettings) -> list[float]:
    with tempfile.TemporaryDirectory() as store, EmbeddedServer(store_dir=Path(store)) as s:
        nc = await nats.connect(s.url)
        engine = Engine(nc, {"burst": SAGA}, settings)
        await engine.start()
        js = nc.jetstream()
        ended = asyncio.Event()
        count = 0

        async def on_status(_: object) -> None:
            nonlocal count
            count += 1
            if count == sagas:
                ended.set()

        await nc.subscribe("saga.status.burst.>", cb=on_status)
        began = time.monotonic()
        acks = [
            await js.publish_async(
                "burst.started", json.dumps({"id": f"b-{i}"}, allow_nan=False).encode()
            )
            for i in range(sagas)
        ]
        await asyncio.gather(*acks)
        print(f"{sagas} triggers published in {time.monotonic() - began:.2f} s", flush=True)
        await asyncio.wait_for(ended.wait(), 180)
        lateness: list[float] = []
        started, timed_out = [], []
        async for record in (await instance_store(js, Topology())).scan():
            history = {h.event: h.at.timestamp() for h in record.state.history}
            started.append(history["step.started"])
            timed_out.append(history["step.timed-out"])
            lateness.append(history["step.timed-out"] - history["step.started"] - TIMEOUT)
        print(
            f"steps started over {max(started) - min(started):.2f} s, "
            f"timed out over {max(timed_out) - min(timed_out):.2f} s",
            flush=True,
        )
        await engine.stop()
        await nc.close()
        return lateness


def report(name: str, lateness: list[float]) -> None:
    ordered = sorted(lateness)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    print(
        f"{name}: {len(ordered)} timeouts, lateness p50 {statistics.median(ordered) * 1000:.0f} ms,"
        f" p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=2000)
    args = parser.parse_args()
    report("engine defaults", asyncio.run(measure(args.sagas, EngineSettings())))


if __name__ == "__main__":
    main()
