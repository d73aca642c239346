"""(a) Sagas with random failures and timeouts while the engine is SIGKILLed and restarted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from saga.nats.connection import NatsSettings, connect
from saga.nats.server import EmbeddedServer
from tests.chaos.conftest import Scale
from tests.chaos.harness import (
    Figures,
    Fleet,
    Progress,
    assert_clean,
    feed,
    plan,
    running,
    verdict,
    wait_all_ended,
)


@pytest.mark.slow
async def test_engine_sigkilled_every_few_seconds(
    nats_server: EmbeddedServer, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    planned = plan(scale.sagas(150, 1000), seed=1, prefix="kill")
    feeding = scale.seconds(12, 75)
    every = 3.0
    started = time.monotonic()
    nc = await connect(NatsSettings(url=nats_server.url, name="chaos"))
    js = nc.jetstream()
    progress = Progress()
    await progress.start(nc)
    fleet = Fleet(nats_server.url, tmp_path)
    async with running(fleet):
        fleet.start_engine()
        fleet.start_services()
        feeder = asyncio.create_task(feed(js, planned, feeding))
        while not feeder.done():
            await asyncio.sleep(every)  # pacing the faults, not waiting for a result
            fleet.check_alive()
            fleet.kill_engine()
            restarted = time.monotonic()
            fleet.start_engine()
            figures.restarts += 1
            figures.recoveries.append(await progress.recovery_after(restarted))
        await feeder
        figures.kills = fleet.kills
        await wait_all_ended(nc, planned, timeout=scale.seconds(90, 300))
    figures.seconds = time.monotonic() - started
    report, mismatches = await verdict(nc, planned, figures, tmp_path)
    await nc.close()
    assert figures.kills >= 3
    assert_clean(report, mismatches)
