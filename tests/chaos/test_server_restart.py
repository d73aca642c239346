"""(b) The nats-server SIGKILLed mid-run and restarted on the same port and store."""

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
async def test_server_killed_and_restarted_on_its_store(
    nats_server: EmbeddedServer, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    planned = plan(scale.sagas(100, 600), seed=2, prefix="srv")
    restarts = int(scale.sagas(1, 3))
    started = time.monotonic()
    nc = await connect(NatsSettings(url=nats_server.url, name="chaos"))
    js = nc.jetstream()
    progress = Progress()
    await progress.start(nc)
    fleet = Fleet(nats_server.url, tmp_path)
    async with running(fleet):
        fleet.start_engine()
        fleet.start_services()
        feeder = asyncio.create_task(feed(js, planned, scale.seconds(6, 45)))
        for _ in range(restarts):
            await asyncio.sleep(scale.seconds(3, 10))  # pacing the fault
            await asyncio.to_thread(nats_server.stop, True)
            figures.kills += 1
            await asyncio.sleep(1.0)  # the server stays away for a moment
            await asyncio.to_thread(nats_server.start)
            back = time.monotonic()
            figures.restarts += 1
            figures.recoveries.append(await progress.recovery_after(back))
            fleet.check_alive()
        await feeder
        await wait_all_ended(nc, planned, timeout=scale.seconds(90, 300))
    figures.seconds = time.monotonic() - started
    report, mismatches = await verdict(nc, planned, figures, tmp_path)
    await nc.close()
    assert_clean(report, mismatches)
