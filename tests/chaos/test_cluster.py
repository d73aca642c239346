"""(c) A 3-node JetStream cluster on loopback, replicas 3, with one node killed and brought back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from saga.nats.cluster import LoopbackCluster, wait_jetstream
from saga.nats.connection import NatsSettings, connect
from saga.nats.outage import TRANSIENT
from saga.nats.provision import StreamSettings, provision_engine
from saga.nats.topology import Topology
from saga.participant.buckets import Buckets
from saga.protocol import EFFECTS_BUCKET
from services.hotel import TRIPS_BUCKET
from tests.chaos.conftest import Scale
from tests.chaos.harness import (
    Figures,
    Fleet,
    Progress,
    assert_clean,
    chaos_definitions,
    feed,
    fleet_ready,
    plan,
    plan_timeouts,
    running,
    verdict,
    wait_all_ended,
)
from tests.support import wait_for

R3 = StreamSettings(replicas=3)
PARTITIONED = ("--partitions", "4", "--stream-replicas", "3")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    with LoopbackCluster(tmp_path / "cluster").start() as started:
        yield started


async def provision_replicated(js: JetStreamContext) -> None:
    """Streams, consumers and buckets with 3 replicas, made before any process starts:
    ``saga run`` and the services then find them and use them as they are."""
    definitions = chaos_definitions().values()
    await provision_engine(
        js,
        Topology(),
        R3,
        listened=[s for d in definitions for s in d.subjects.listened],
        published=[s for d in definitions for s in d.subjects.published],
    )
    buckets = Buckets(js, R3)
    for name in (Topology().replies_bucket, EFFECTS_BUCKET, TRIPS_BUCKET):
        await buckets.get(name)


async def settled_leader(js: JetStreamContext, stream: str) -> str:
    """The stream's leader, once it has one and every replica is current (a node brought
    back has caught up): killing it then tests a failover, not a cluster without quorum."""
    found: list[str] = []

    async def settled() -> bool:
        try:
            cluster = (await js.stream_info(stream)).cluster
        except TRANSIENT:
            return False  # still electing
        if cluster is None or cluster.leader is None:
            return False
        if not all(peer.current for peer in cluster.replicas or []):
            return False
        found.append(cluster.leader)
        return True

    await wait_for(settled, timeout=60, interval=0.2, message=f"{stream} to settle on a leader")
    return found[-1]


@pytest.mark.slow
async def test_cluster_node_killed_and_brought_back(
    cluster: LoopbackCluster, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    await wait_jetstream(cluster.urls, replicas=3)
    planned = plan(scale.sagas(80, 500), seed=3, prefix="r3")
    started = time.monotonic()
    nc = await connect(NatsSettings(url=cluster.urls, name="chaos"))
    js = nc.jetstream(timeout=10)
    await provision_replicated(js)
    assert (await js.stream_info("SAGA_EVENTS")).config.num_replicas == 3
    progress = Progress()
    await progress.start(nc)
    fleet = Fleet(cluster.urls, tmp_path)
    async with running(fleet):
        # Two engine replicas share the work on the cluster, each owning half the partitions.
        fleet.start_engine(0, *PARTITIONED)
        fleet.start_engine(1, *PARTITIONED)
        fleet.start_services()
        feeder = asyncio.create_task(feed(js, planned, scale.seconds(8, 45)))
        ready_since = started
        for _ in range(int(scale.sagas(1, 3))):
            await fleet_ready(js, progress, ready_since)
            victim = cluster.index_of(await settled_leader(js, "SAGA_EVENTS"))
            await asyncio.to_thread(cluster.kill, victim)
            killed = time.monotonic()
            figures.kills += 1
            figures.recoveries.append(await progress.recovery_after(killed))
            await asyncio.to_thread(cluster.restart, victim)
            figures.restarts += 1
            ready_since = time.monotonic()
            fleet.check_alive()
        await feeder
        seen: dict[tuple[str, str], str] = {}
        ended = await wait_all_ended(nc, planned, timeout=scale.seconds(120, 400), seen=seen)
        figures.seconds = time.monotonic() - started
        figures.notes = (
            "2 partitioned engine replicas; recovery measured from the kill of the SAGA_EVENTS "
            "leader" + ("" if ended else "; gave up waiting for every saga to end")
        )
        # read while the engines still run: a stuck saga's slot and consumers as they are
        report, mismatches = await verdict(nc, planned, figures, tmp_path, seen_ended=seen)
    await nc.close()
    assert_clean(report, mismatches)


@pytest.mark.slow
async def test_cluster_timers_leader_killed_while_timeouts_fire(
    cluster: LoopbackCluster, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    """Every saga waits on a step that never answers; the SAGA_TIMERS leader is killed
    while their timeouts come due (10s after they start, then again 10s later): every
    timeout must still be acted on, so every saga ends compensated."""
    await wait_jetstream(cluster.urls, replicas=3)
    planned = plan_timeouts(scale.sagas(120, 400), seed=5, prefix="tt")
    started = time.monotonic()
    nc = await connect(NatsSettings(url=cluster.urls, name="chaos"))
    js = nc.jetstream(timeout=10)
    await provision_replicated(js)
    progress = Progress()
    await progress.start(nc)
    fleet = Fleet(cluster.urls, tmp_path)
    async with running(fleet):
        fleet.start_engine(0, *PARTITIONED)
        fleet.start_engine(1, *PARTITIONED)
        fleet.start_services()
        feeder = asyncio.create_task(feed(js, planned, scale.seconds(6, 20)))
        await fleet_ready(js, progress, started)
        fed = time.monotonic()
        for round_ in range(scale.sagas(3, 5)):
            # pace the kills into the windows where timeouts fire (not a wait for a condition)
            await asyncio.sleep(max(0.0, fed + 9 + 6 * round_ - time.monotonic()))
            victim = cluster.index_of(await settled_leader(js, "SAGA_TIMERS"))
            await asyncio.to_thread(cluster.kill, victim)
            killed = time.monotonic()
            figures.kills += 1
            figures.recoveries.append(await progress.recovery_after(killed))
            await asyncio.to_thread(cluster.restart, victim)
            figures.restarts += 1
            fleet.check_alive()
        await feeder
        seen: dict[tuple[str, str], str] = {}
        ended = await wait_all_ended(nc, planned, timeout=scale.seconds(150, 400), seen=seen)
        figures.seconds = time.monotonic() - started
        figures.notes = "SAGA_TIMERS leader killed while timeouts fire" + (
            "" if ended else "; gave up waiting for every saga to end"
        )
        report, mismatches = await verdict(nc, planned, figures, tmp_path, seen_ended=seen)
    await nc.close()
    assert_clean(report, mismatches)
