"""A participant waits out a JetStream that does not answer (issue 12: a participant died
with ``nats: timeout`` while a cluster elected a leader).

A real 3-node cluster with two nodes down has no meta leader: its streams still exist,
but creating a consumer or a bucket times out until the nodes are back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from saga.nats.cluster import LoopbackCluster, wait_jetstream
from saga.nats.outage import TRANSIENT
from saga.participant import App, Context
from tests.integration.test_participant import FAST, body, saga_headers, wait_messages
from tests.support import wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    with LoopbackCluster(tmp_path / "cluster").start() as started:
        yield started


async def test_a_participant_started_without_a_jetstream_quorum_waits_and_then_consumes(
    cluster: LoopbackCluster, caplog: pytest.LogCaptureFixture
) -> None:
    await wait_jetstream(cluster.urls, replicas=3)
    nc = await nats.connect(cluster.nodes[0].url)
    app = App("survivor")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"served": ctx.saga_id}

    context = app.running(nc, FAST)
    entering: asyncio.Task[Any] | None = None
    try:
        js = nc.jetstream(timeout=10)
        for name, subjects in (("SAGA_EVENTS", ["t.>"]), ("SAGA_DLQ", ["saga.dlq.>"])):
            await js.add_stream(StreamConfig(name=name, subjects=subjects, num_replicas=3))
        await asyncio.to_thread(cluster.kill, 1)
        await asyncio.to_thread(cluster.kill, 2)  # no quorum: JetStream API requests time out

        caplog.set_level(logging.WARNING, "saga.participant")
        entering = asyncio.create_task(context.__aenter__())
        await wait_for(
            lambda: (
                "survivor: JetStream is not answering (nats: timeout)" in caplog.text
                or entering.done()
            ),
            timeout=30,
            message="the participant to report the outage",
        )
        assert not entering.done(), "started (or died) without a JetStream quorum"
        await asyncio.to_thread(cluster.restart, 1)
        await asyncio.to_thread(cluster.restart, 2)
        worker = await asyncio.wait_for(entering, 60)
        assert worker.consuming

        async def published() -> bool:  # the stream may still be electing its leader
            try:
                await js.publish("t.cmd", b"{}", headers=saga_headers())
            except TRANSIENT:
                return False
            return True

        await wait_for(published, timeout=30, message="the stream to take a command")
        [reply] = await wait_messages(js, "t.ok")
        assert body(reply) == {"served": "s-1"}
    finally:
        if entering is not None and entering.done() and not entering.exception():
            await context.__aexit__(None, None, None)
        elif entering is not None:
            entering.cancel()
        await nc.close()
