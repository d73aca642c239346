"""The engine's memory while its trace collector is down: ``python bench/collector_outage.py
[--sagas 14000] [--step 2000]``.

The bench's engine and participants (``saga run``, ``saga participant``) with tracing on,
exporting over OTLP/HTTP to a loopback port nothing listens on; the bench's driver runs
driven sagas, 200 in flight, and prints the engine's RSS after each ``--step`` of them. An
ended saga's record waits in the engine until the exporter has flushed its spans (its
"traced" mark, ``saga.telemetry.recovery``); with the collector down the flush never
succeeds, so the RSS grows until the bound on waiting marks is reached, then stays level.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats

from bench.measure import ENGINE, Driver
from bench.procs import rss_mib
from bench.sagas import Run, parse_args
from bench.stacks import EngineStack, otel_on

NOBODY = "http://127.0.0.1:9"
"""The discard port on loopback: a connection there is refused (nothing listens)."""


async def outage(sagas: int, step: int) -> list[tuple[int, float]]:
    run = Run(parse_args(["--json"]), Path(tempfile.mkdtemp(prefix="saga-outage-")))
    await asyncio.to_thread(run.server.start)
    nc = await nats.connect(run.server.url, name="bench-driver")
    driver = Driver(nc, 120, run.check, run.cpu)
    await driver.start()
    stack = EngineStack(run.procs, nc.jetstream(), run.server.url, 1)
    await stack.start(otel_on(NOBODY))
    figures: list[tuple[int, float]] = []
    try:
        await driver.run(ENGINE, 200, 100, "warm")
        pid = run.procs.first("engine").process.pid
        done = 200
        figures.append((done, rss_mib(pid)))
        while done < sagas:
            await driver.run(ENGINE, step, 200, f"outage-{done}")
            done += step
            figures.append((done, rss_mib(pid)))
            print(f"{done:>7} sagas  engine RSS {figures[-1][1]:7.1f} MiB", flush=True)
    finally:
        stack.stop()
        await nc.close()
        run.server.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=14_200, help="sagas in all")
    parser.add_argument("--step", type=int, default=2_000, help="sagas between RSS readings")
    args = parser.parse_args()
    asyncio.run(outage(args.sagas, args.step))


if __name__ == "__main__":
    main()
