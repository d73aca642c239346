"""(e) Duplicate, reordered and late events injected on purpose while sagas run."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from saga.nats.connection import NatsSettings, connect
from saga.nats.server import EmbeddedServer
from saga.protocol import HEADER_MSG_ID, TIMER_FIRE_PREFIX
from tests.chaos.conftest import Scale
from tests.chaos.harness import (
    Figures,
    Fleet,
    assert_clean,
    chaos_definitions,
    feed,
    plan,
    running,
    verdict,
    wait_all_ended,
)


class Injector:
    """Copies real messages back onto their subjects, later and in another order.

    Every copy gets a fresh ``Nats-Msg-Id`` so the server's deduplication does not hide
    it: the engine and the services see true duplicates. Replies, commands, triggers
    and fired timers are copied; a copy is delayed by 0-4 s (some arrive at once, some
    after the step moved on, some after the saga ended), which also reorders them.
    """

    def __init__(self, nc: Client, seed: int, share: float = 0.3) -> None:
        self.nc = nc
        self.rng = random.Random(seed)
        self.share = share
        self.copies = 0
        self.stopped = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        definitions = chaos_definitions().values()
        subjects = {s for d in definitions for s in (*d.subjects.listened, *d.subjects.published)}
        for subject in sorted(subjects):
            await self.nc.subscribe(subject, cb=self._seen)
        await self.nc.subscribe(f"{TIMER_FIRE_PREFIX}.>", cb=self._seen)

    async def _seen(self, msg: Msg) -> None:
        injected = (msg.headers or {}).get(HEADER_MSG_ID, "").startswith("inject:")
        if self.stopped or injected or self.rng.random() >= self.share:
            return
        copies = 1 + (self.rng.random() < 0.3)
        for _ in range(copies):
            delay = self.rng.choice([0.0, 0.05, 0.5, 1.5, 4.0])
            task = asyncio.create_task(self._later(msg.subject, msg.data, msg.headers, delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _later(
        self, subject: str, data: bytes, headers: dict[str, str] | None, delay: float
    ) -> None:
        await asyncio.sleep(delay)  # the point of the exercise: late, reordered copies
        copied = {**(headers or {}), HEADER_MSG_ID: f"inject:{uuid.uuid4().hex}"}
        try:
            await self.nc.jetstream().publish(subject, data, headers=copied)
            self.copies += 1
        except Exception:
            pass  # a copy that could not be injected is no copy

    async def drain(self) -> None:
        self.stopped = True
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@pytest.mark.slow
async def test_duplicate_reordered_and_late_events(
    nats_server: EmbeddedServer, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    planned = plan(scale.sagas(80, 500), seed=5, prefix="inj")
    started = time.monotonic()
    nc = await connect(NatsSettings(url=nats_server.url, name="chaos"))
    js = nc.jetstream()
    injector_nc = await connect(NatsSettings(url=nats_server.url, name="injector"))
    injector = Injector(injector_nc, seed=5)
    fleet = Fleet(nats_server.url, tmp_path)
    async with running(fleet):
        fleet.start_engine()
        fleet.start_services()
        await injector.start()
        await feed(js, planned, scale.seconds(5, 40))
        await wait_all_ended(nc, planned, timeout=scale.seconds(90, 300))
        await injector.drain()
        await wait_all_ended(nc, planned, timeout=10)  # late copies changed nothing
        fleet.check_alive()
    await injector_nc.close()
    figures.seconds = time.monotonic() - started
    figures.notes = f"{injector.copies} copies injected"
    report, mismatches = await verdict(nc, planned, figures, tmp_path)
    await nc.close()
    assert injector.copies > len(planned)
    assert_clean(report, mismatches)
